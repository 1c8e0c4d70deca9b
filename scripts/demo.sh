#!/usr/bin/env bash
# Quick start, first command: set up, then run the MTA's configuration tools on the
# bundled example gateway (examples/gateway), then build a local lab of SSH hosts
# (harden lab), reach each one with pinned host keys, and take the lab down.
# Until provisioning lands this is the main job. Works on a copy under .cache/demo;
# the example stays clean. The lab part needs root (namespaces, mounts).
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

if [ "$(id -u)" = 0 ]; then
    lab=$PWD/.cache/demo/lab
    step "a local lab of 3 SSH hosts in Linux namespaces (harden lab up 3)"
    .venv/bin/harden lab up 3 --dir "$lab"
    trap '.venv/bin/harden lab down --dir "$lab"' EXIT
    step "each host's address, pid and SSH reachability with strict host key checking (harden lab status)"
    .venv/bin/harden lab status --dir "$lab"
    step "run a command on gw2 (harden lab ssh gw2 ...)"
    .venv/bin/harden lab ssh --dir "$lab" gw2 'hostname; uname -r; ps -e --no-headers | wc -l'
    step "the inventory the lab wrote ($lab/inventory.yml)"
    sed -n '1,20p' "$lab/inventory.yml"
    step "take the lab down (harden lab down)"
    trap - EXIT
    .venv/bin/harden lab down --dir "$lab"
fi
