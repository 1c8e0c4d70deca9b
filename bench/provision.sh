#!/usr/bin/env bash
# Provisioning speed of `harden provision` against ansible-core and pyinfra on 10 lab hosts
# (interleaved rounds, medians). Sets up what it needs, then runs bench/provision.py; see its --help.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv=.cache/bench-venv
if [ ! -x "$venv/bin/ansible-playbook" ] || [ ! -x "$venv/bin/pyinfra" ]; then
    /usr/bin/python3 -m venv "$venv"
    # ansible-core 2.19 is the newest for Python 3.11; pyinfra 3.10 as measured in the issue.
    "$venv/bin/pip" install --quiet --disable-pip-version-check ansible-core==2.19.14 pyinfra==3.10.0
fi
exec .venv/bin/python bench/provision.py --tools-venv "$venv" "$@"
