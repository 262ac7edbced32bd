#!/bin/sh
# Build the deterministic busybox rootfs tarball used as the base image (no network):
# busybox-static at /bin/busybox, every applet symlinked in /bin, minimal /etc.
# usage: busybox-rootfs.sh DEST.tar
set -eu
DEST=$1
R=$(mktemp -d)
chmod 755 "$R"
trap 'rm -rf "$R"' EXIT
mkdir -p "$R/bin" "$R/usr" "$R/etc" "$R/root" "$R/tmp" "$R/var/www" "$R/proc" "$R/sys" "$R/dev" "$R/home"
chmod 1777 "$R/tmp"
cp /bin/busybox "$R/bin/busybox"
chroot "$R" /bin/busybox --install -s /bin
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$R/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$R/etc/group"
tar -C "$R" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$DEST" .
