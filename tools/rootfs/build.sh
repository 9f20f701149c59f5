#!/bin/sh
# build.sh DIR [PACKAGE...]: build mrtd's default rootfs, Debian bookworm
# minbase with python3-minimal, into DIR (which must not exist), then slim
# it. Each PACKAGE (a Debian package name; commas also separate) is
# installed too, with its dependencies: `make rootfs NAME=N PACKAGES=...`
# builds a worker's rootfs this way, for --rootfs.
#
# Runs as root (debootstrap needs it). The mirror is the first Debian mirror
# this machine's apt is configured with, or $MRTD_MIRROR.
set -eu

dir=$1
shift
suite=${MRTD_SUITE:-bookworm}

include=python3-minimal
for p in "$@"; do
	for q in $(echo "$p" | tr ',' ' '); do
		case $q in
		[!a-z0-9]* | *[!a-z0-9.+-]*)
			echo "build.sh: $q is not a Debian package name" >&2
			exit 2
			;;
		esac
		include=$include,$q
	done
done

if [ -e "$dir" ]; then
	echo "build.sh: $dir exists; remove it first" >&2
	exit 1
fi

mirror=${MRTD_MIRROR:-}
if [ -z "$mirror" ]; then
	# deb822 sources (URIs: ...) first, then one-line sources (deb URL suite ...).
	mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '$1 == "URIs:" && $2 ~ /\/debian\/?$/ { print $2; exit }')
fi
if [ -z "$mirror" ]; then
	mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '$1 == "deb" && $2 ~ /^http/ && $2 ~ /\/debian\/?$/ { print $2; exit }')
fi
mirror=${mirror:-http://deb.debian.org/debian}

tmp=$dir.tmp
rm -rf "$tmp"
echo "build.sh: debootstrap $suite from $mirror into $tmp"
echo "build.sh: packages beyond minbase: $include"
debootstrap --variant=minbase --include="$include" "$suite" "$tmp" "$mirror"

# Python checks a .pyc against its source's mtime, and the packer fixes every
# mtime: compile the standard library with hashes that are never checked, so
# the read-only rootfs never makes Python recompile at start.
chroot "$tmp" /usr/bin/python3 -m compileall -q -f \
	--invalidation-mode unchecked-hash /usr/lib/python3 /usr/lib/python3.11 >/dev/null

# The pool's default command, and mount points for --mount: the rootfs is
# shared and read-only, so a mount point cannot be created at run time.
install -m 0755 "$(dirname "$0")/mrtd-demo-worker" "$tmp/usr/local/bin/mrtd-demo-worker"
mkdir -p "$tmp/srv" "$tmp/data" "$tmp/var/archivematica/sharedDirectory"

# Slim: nothing a worker needs at run time.
rm -rf "$tmp"/var/cache/apt/* "$tmp"/var/lib/apt/lists/* \
	"$tmp"/usr/share/doc/* "$tmp"/usr/share/man/* "$tmp"/usr/share/info/* \
	"$tmp"/usr/share/locale/* "$tmp"/usr/share/lintian "$tmp"/usr/share/linda \
	"$tmp"/var/log/* "$tmp"/var/cache/debconf/*-old "$tmp"/var/lib/dpkg/*-old \
	"$tmp"/dev/* "$tmp"/tmp/* "$tmp"/run/* "$tmp"/etc/hostname
find "$tmp" -xdev \( -type c -o -type b -o -type p -o -type s \) -delete

mv "$tmp" "$dir"
echo "build.sh: $dir: $(du -sh "$dir" | cut -f1)"
