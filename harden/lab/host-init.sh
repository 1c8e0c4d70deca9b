#!/bin/sh
# PID 1 of one lab host, run by `unshare --mount --pid --uts --ipc --fork` (harden/lab/host.py).
#
# It builds the host's root file system and then becomes tini running sshd:
#   - a tmpfs holds the host's private writable layer, an overlay puts it over the
#     machine's / (so whatever the host installs or writes stays on this host);
#   - fresh /proc, read-only /sys, a minimal /dev with its own devpts, tmpfs /run,
#     /tmp and /root (Debian's stock dot-files), LAB_DISK from the real disk on /srv;
#   - the lab directory is hidden under an empty tmpfs (no host sees the lab's
#     keys or another host's files);
#   - /etc/hostname, /etc/hosts, /etc/resolv.conf (nameserver 127.0.0.1: no DNS
#     leaves the machine) and sshd's key and configuration in the writable layer;
#   - an unprivileged account (LAB_MAIL_USER, mailadmin) that root's mail goes to;
#   - pivot_root into it, then exec tini (reaps orphans) running sshd -D.
# Every mount is made inside this mount namespace and vanishes with its last process.
#
# Environment: LAB_DIR, LAB_HOST_DIR, LAB_NAME (FQDN), LAB_ADDR, LAB_DISK, LAB_LAYER_SIZE.
set -eu

: "${LAB_DIR:?}" "${LAB_HOST_DIR:?}" "${LAB_NAME:?}" "${LAB_ADDR:?}" "${LAB_DISK:?}"
layer="$LAB_HOST_DIR/layer"
new="$layer/merged"

hostname "$LAB_NAME"
mount --make-rprivate /
mount -t tmpfs -o "mode=0755,size=${LAB_LAYER_SIZE:-1g}" "lab-layer" "$layer"
mkdir -p "$layer/upper" "$layer/work" "$new"
mount -t overlay overlay -o "lowerdir=/,upperdir=$layer/upper,workdir=$layer/work" "$new"

mount -t proc -o nosuid,nodev,noexec proc "$new/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$new/sys"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$new/dev"
for node in null zero full random urandom tty; do
    touch "$new/dev/$node"
    mount --bind "/dev/$node" "$new/dev/$node"
done
mkdir -p "$new/dev/pts" "$new/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$new/dev/pts"
ln -s pts/ptmx "$new/dev/ptmx"
ln -s /proc/self/fd "$new/dev/fd"
ln -s /proc/self/fd/0 "$new/dev/stdin"
ln -s /proc/self/fd/1 "$new/dev/stdout"
ln -s /proc/self/fd/2 "$new/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$new/dev/shm"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$new/run"
mkdir -p -m 0755 "$new/run/sshd"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$new/tmp"
mount -t tmpfs -o mode=0700 tmpfs "$new/root"
cp /usr/share/base-files/dot.profile "$new/root/.profile"
cp /usr/share/base-files/dot.bashrc "$new/root/.bashrc"
mkdir -m 0700 "$new/root/.ssh"
cp "$LAB_DIR/id_ed25519.pub" "$new/root/.ssh/authorized_keys"
chmod 0600 "$new/root/.ssh/authorized_keys"
mkdir -p "$LAB_DISK" "$new/srv"
mount --bind "$LAB_DISK" "$new/srv"

printf '%s\n' "$LAB_NAME" > "$new/etc/hostname"
printf '127.0.0.1\tlocalhost\n%s\t%s %s\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    "$LAB_ADDR" "$LAB_NAME" "${LAB_NAME%%.*}" > "$new/etc/hosts"
rm -f "$new/etc/resolv.conf"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "$new/etc/resolv.conf"
rm -f "$new"/etc/ssh/ssh_host_*
install -m 0600 "$LAB_HOST_DIR/ssh_host_ed25519_key" "$new/etc/ssh/ssh_host_ed25519_key"
install -m 0644 "$LAB_HOST_DIR/ssh_host_ed25519_key.pub" "$new/etc/ssh/ssh_host_ed25519_key.pub"
install -m 0644 "$LAB_HOST_DIR/sshd_config" "$new/etc/ssh/sshd_config"

mount -t tmpfs -o mode=0755,size=1m tmpfs "$new$LAB_DIR"

# An unprivileged account for root's mail (the inventory's root_alias), in this host only.
chroot "$new" /usr/sbin/useradd --create-home --user-group --shell /bin/sh "${LAB_MAIL_USER:-mailadmin}"

mkdir -p "$new/.oldroot"
cd "$new"
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot
exec /usr/bin/tini -s -- /usr/sbin/sshd -D -e
