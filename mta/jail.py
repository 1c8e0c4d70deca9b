"""What the chroot jail under queue_directory holds and who owns it: one list for the MTA and for harden.

Postfix's examples/chroot-setup/LINUX2 (reference §11.1), with Debian's
additions (§11.2). harden.chroot builds the jail from these lists on every
provision; ``mta check`` reports files missing from it or differing from
their counterpart outside; chrooted daemons rely on it for time zones, user
and host lookups.

OWNERSHIP (seed 7.5.6): everything under the jail's top directories is
root:root, directories 0755; never postfix:postdrop.
"""

from __future__ import annotations

import fnmatch
import glob
import os

# Copied into JAIL/etc from /etc (localtime as content); passwd is written
# separately, with every password field replaced by "x".
ETC_FILES: tuple[str, ...] = ("localtime", "services", "resolv.conf", "nsswitch.conf", "host.conf", "hosts")
# Libraries copied from each multiarch library directory (and /lib64) into JAIL/lib/<arch>.
LIB_PATTERNS: tuple[str, ...] = ("libnss_*.so*", "libresolv.so*", "libresolv-*.so", "libgcc_s.so*", "libdb-*.so")
# The jail's top directories: all root-owned.
JAIL_TOPS: tuple[str, ...] = ("bin", "etc", "lib", "lib64", "sbin", "usr")
ZONEINFO_LINK = ("usr/lib/zoneinfo/localtime", "/etc/localtime")


def jail_expected(root: str = "/") -> list[str]:
    """Paths (relative to the jail) the jail must hold on this host: etc files, passwd, libraries, zoneinfo."""
    out = [f"etc/{name}" for name in ETC_FILES if os.path.exists(os.path.join(root, "etc", name))]
    out.append("etc/passwd")
    for directory in sorted(glob.glob(os.path.join(root, "lib", "*-linux-gnu"))):
        if not os.path.isdir(directory):
            continue
        arch = os.path.basename(directory)
        for name in sorted(os.listdir(directory)):
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in LIB_PATTERNS):
                out.append(f"lib/{arch}/{name}")
    out.append(ZONEINFO_LINK[0])
    return out
