#!/usr/bin/env bash
# Create .venv and install the project with its pinned dependencies (idempotent).
#
# The venv is built on the system's Python (Debian's /usr/bin/python3) when it is
# 3.11 or newer: `mta sendmail` and `mailq` are run by every local user, so the
# interpreter must be readable by all of them (a pyenv Python under /root is not).
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-}
pick_python() {
    for candidate in ${MTA_PYTHON:-} /usr/bin/python3 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return
        fi
    done
    echo "setup: no Python >= 3.11 with the venv module found" >&2
    exit 1
}
python=$(pick_python)
home=$(dirname "$(readlink -f "$python")")
if [ -x .venv/bin/python ] && ! grep -qx "home = $home" .venv/pyvenv.cfg 2>/dev/null; then
    rm -rf .venv   # built on another interpreter: rebuild
fi
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
stamp=.venv/.installed${extra:+-$extra}
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install --quiet --disable-pip-version-check -e ".${extra:+[$extra]}"
    touch "$stamp"
fi
# The MTA's mail_owner and setgid_group (Postfix's defaults), needed by `mta start` and its tests.
if [ "$(id -u)" = 0 ]; then
    getent group postdrop >/dev/null || groupadd --system postdrop
    getent passwd postfix >/dev/null || useradd --system --no-create-home --shell /usr/sbin/nologin postfix
fi
# The tests render the audit's HTML report in Debian's headless Chromium.
if [ "$extra" = test ] && [ "$(id -u)" = 0 ] && ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null
        apt-get install -y -q --no-install-recommends chromium >/dev/null
    }
fi
