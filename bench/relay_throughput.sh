#!/usr/bin/env bash
# Relay throughput of this MTA against real Postfix 3.7: smtp-source -> gateway -> smtp-sink,
# 10,000 x 1 KB, 20 sessions, interleaved rounds. Sets up what it needs, then runs
# bench/relay_throughput.py; see its --help.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fetch-postfix.sh
exec .venv/bin/python bench/relay_throughput.py "$@"
