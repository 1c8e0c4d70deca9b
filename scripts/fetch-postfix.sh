#!/usr/bin/env bash
# Unpack Debian's real Postfix 3.7 (postfix and postfix-pcre .debs) and the swaks SMTP client
# into .cache/postfix-3.7/root, for the differential tests, the end-to-end tests and the
# benchmarks. Nothing is installed on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.cache/postfix-3.7
if [ -x "$dest/root/usr/sbin/postconf" ] && [ -x "$dest/root/usr/sbin/postmap" ] \
    && [ -x "$dest/root/usr/bin/swaks" ]; then
    exit 0
fi
mkdir -p "$dest/debs"
cd "$dest/debs"
fetch() {
    apt-get download "$@" >/dev/null 2>&1 || {
        # A fresh machine may have no package lists yet.
        apt-get update -qq >/dev/null
        apt-get download "$@" >/dev/null
    }
}
fetch postfix postfix-pcre swaks
rm -rf ../root.new
mkdir -p ../root.new
for deb in ./*.deb; do dpkg-deb -x "$deb" ../root.new; done
rm -rf ../root
mv ../root.new ../root
echo "fetch-postfix: unpacked $(ls ./*.deb | tr '\n' ' ')into $dest/root"
