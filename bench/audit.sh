#!/usr/bin/env bash
# Audit speed of `harden audit` against the same checks under plain pytest + testinfra (ssh backend,
# serial; paramiko backend with -n 10) on 10 lab hosts, interleaved rounds, medians. See bench/audit.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh bench
exec .venv/bin/python bench/audit.py "$@"
