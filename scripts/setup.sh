#!/usr/bin/env bash
# Create .venv and install the project with its pinned dependencies (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-}
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.installed${extra:+-$extra}
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install --quiet --disable-pip-version-check -e ".${extra:+[$extra]}"
    touch "$stamp"
fi
