#!/usr/bin/env bash
# Quick start, first command: set up, then run the MTA's configuration tools on the
# bundled example gateway (examples/gateway). Until provisioning lands this is the
# main job: validate, build the alias and access tables, query them, show the
# effective configuration. Works on a copy under .cache/demo; the example stays clean.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mta=.venv/bin/mta
etc=$PWD/.cache/demo/etc
rm -rf "$etc"
mkdir -p "$etc"
cp examples/gateway/* "$etc/"

step() { printf '\n== %s\n' "$*"; }

step "main.cf settings (mta postconf -n)"
$mta -c "$etc" postconf -n

step "identity and destinations, expanded (mta postconf -x)"
$mta -c "$etc" postconf -x myhostname mydomain myorigin mydestination masquerade_domains

step "master.cf services (mta postconf -M)"
$mta -c "$etc" postconf -M

step "build the aliases table (mta newaliases) and look up root and postmaster"
$mta -c "$etc" newaliases
printf 'root: '; $mta -c "$etc" postalias -q root "hash:$etc/aliases"
printf 'postmaster: '; $mta -c "$etc" postalias -q postmaster "hash:$etc/aliases"

step "build the access table (mta postmap) and query it"
$mta -c "$etc" postmap "hash:$etc/access"
printf 'former.user@example.com: '; $mta -c "$etc" postmap -q former.user@example.com "hash:$etc/access"

step "parse everything back (harden validate)"
.venv/bin/harden validate "$etc"
