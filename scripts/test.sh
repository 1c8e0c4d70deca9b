#!/usr/bin/env bash
# Quick start, second command: set up everything the tests need, then run them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
bash scripts/fetch-postfix.sh
# Static checks first: undefined names, imports, and types of every public function.
.venv/bin/ruff check --quiet mta harden tests bench
.venv/bin/mypy --no-error-summary
exec .venv/bin/python -m pytest "$@"
