#!/usr/bin/env bash
# Rollout speed of `harden rollout --serial 100%` against the equivalent Ansible playbook (forks=20) on
# 20 lab hosts (interleaved rounds, medians). Sets up what it needs, then runs bench/rollout.py; see its --help.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv=.cache/bench-venv
if [ ! -x "$venv/bin/ansible-playbook" ]; then
    /usr/bin/python3 -m venv "$venv"
    # ansible-core 2.19 is the newest for Python 3.11 (the same as bench/provision.sh installs).
    "$venv/bin/pip" install --quiet --disable-pip-version-check ansible-core==2.19.14 pyinfra==3.10.0
fi
exec .venv/bin/python bench/rollout.py --tools-venv "$venv" "$@"
