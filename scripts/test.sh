#!/usr/bin/env bash
# Quick start, second command: set up everything the tests need, then run them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
bash scripts/fetch-postfix.sh
exec .venv/bin/python -m pytest "$@"
