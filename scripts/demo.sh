#!/usr/bin/env bash
# Quick start, first command: set up, run the MTA's configuration tools on the
# bundled example gateway (examples/gateway), then the main job: build a local lab
# of 3 SSH hosts (harden lab), provision them as hardened mail gateways (harden
# provision), send a message to root at a gateway over SMTP and show it arrived in
# the unprivileged account's Maildir, check and audit each gateway (harden audit,
# also as an HTML report), break one and see the audit catch it, then roll a change
# out to the fleet in batches and see a bad one rolled back. Works on a copy under
# .cache/demo; the example stays clean. The lab part needs root (namespaces, mounts).
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

if [ "$(id -u)" != 0 ]; then
    echo "demo: the lab part needs root (namespaces, mounts); skipped"
    exit 0
fi
lab=$PWD/.cache/demo/lab
step "a local lab of 3 SSH hosts in Linux namespaces (harden lab up 3)"
.venv/bin/harden lab up 3 --dir "$lab"

step "each host's address, pid and SSH reachability with strict host key checking (harden lab status)"
.venv/bin/harden lab status --dir "$lab"

step "provision the 3 hosts as hardened gateways (harden provision -i $lab/inventory.yml)"
.venv/bin/harden provision -i "$lab/inventory.yml"

step "a second run finds nothing to change"
.venv/bin/harden provision -i "$lab/inventory.yml"

step "send a message to root at gw1 over SMTP (to 127.0.0.11 port 25)"
.venv/bin/python - <<'PY'
import smtplib
with smtplib.SMTP("127.0.0.11", 25, timeout=30) as smtp:
    print(smtp.ehlo()[1].decode().splitlines()[0])
    smtp.sendmail("admin@example.org", ["root@gw1.lab.example"],
                  "From: admin@example.org\nTo: root@gw1.lab.example\nSubject: hello from the demo\n\n"
                  "root's mail goes to an unprivileged account.\n")
    print("250: accepted")
PY

step "it arrived in the unprivileged account's Maildir on gw1 (root -> mailadmin)"
for _ in $(seq 1 50); do
    if .venv/bin/harden lab ssh --dir "$lab" gw1 'ls /home/mailadmin/Maildir/new/* >/dev/null 2>&1'; then break; fi
    sleep 0.2
done
.venv/bin/harden lab ssh --dir "$lab" gw1 'f=$(ls -t /home/mailadmin/Maildir/new/* | head -1); ls -l "$f"; sed -n "1,12p" "$f"'
.venv/bin/harden lab ssh --dir "$lab" gw1 'grep -E "status=sent" /var/log/mail.log | tail -2'

step "check each gateway (mta check: ownership, modes, stale chroot files)"
for h in gw1 gw2 gw3; do
    printf '%s: ' "$h"
    .venv/bin/harden lab ssh --dir "$lab" "$h" 'mta -c /etc/postfix check && echo "mta check: no warnings"'
done

step "audit the fleet over SSH (harden audit: jail, master.cf, daemons, aliases, modes, live SMTP probes)"
.venv/bin/harden audit -i "$lab/inventory.yml" --format html -o "$PWD/.cache/demo/audit.html" || true
COLUMNS=${COLUMNS:-140} .venv/bin/harden audit -i "$lab/inventory.yml" && echo "audit: every check passed or was skipped"
echo "HTML report: $PWD/.cache/demo/audit.html"

step "break gw3 (root's mail to root, an open relay) and audit it again: exit status 1, the two findings"
.venv/bin/harden lab ssh --dir "$lab" gw3 "sed -i 's/^root:.*/root: root/' /etc/postfix/aliases && \
    mta -c /etc/postfix newaliases && mta -c /etc/postfix postconf -e 'mynetworks = 0.0.0.0/0' && \
    mta -c /etc/postfix reload"
status=0; COLUMNS=${COLUMNS:-140} .venv/bin/harden audit -i "$lab/inventory.yml" -l 'gw3*' || status=$?
echo "harden audit exit status: $status"

step "provisioning repairs gw3, and audits what it changed"
.venv/bin/harden provision -i "$lab/inventory.yml" -l 'gw3*'

inventory_with() {  # inventory_with OUT NAME=YAML...: the lab's inventory with these variables for all hosts
    .venv/bin/python - "$lab/inventory.yml" "$@" <<'PY'
import sys, yaml
data = yaml.safe_load(open(sys.argv[1]))
for pair in sys.argv[3:]:
    name, _, value = pair.partition("=")
    data["all"]["vars"][name] = yaml.safe_load(value)
open(sys.argv[2], "w").write(yaml.safe_dump(data, sort_keys=False))
PY
}

step "roll a change out to the fleet (harden rollout --serial 1,100%: gw1 is the canary; each host is snapshotted, validated, reloaded, audited and sent a probe message)"
inventory_with "$lab/limit100.yml" smtpd_recipient_limit=100
COLUMNS=${COLUMNS:-140} .venv/bin/harden rollout -i "$lab/limit100.yml" --serial 1,100%

step "drift against the original inventory (harden diff): exit status 1 and the diffs"
status=0; .venv/bin/harden diff -i "$lab/inventory.yml" -l 'gw1*' || status=$?
echo "harden diff exit status: $status"

step "a change that breaks delivery (mydestination loses the host's own name) fails on the canary, which is restored; gw2 and gw3 are untouched"
inventory_with "$lab/broken.yml" smtpd_recipient_limit=100 'mydestination=[localhost]'
status=0; COLUMNS=${COLUMNS:-140} .venv/bin/harden rollout -i "$lab/broken.yml" --serial 1,100% || status=$?
echo "harden rollout exit status: $status"
.venv/bin/harden lab ssh --dir "$lab" gw1 'grep -E "^(mydestination|smtpd_recipient_limit) " /etc/postfix/main.cf'

echo
echo "The lab stays up for you to explore: .venv/bin/harden lab ssh --dir $lab gw1"
echo "Take it down with: .venv/bin/harden lab down --dir $lab"
