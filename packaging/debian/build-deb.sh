#!/usr/bin/env bash
# build-deb.sh ROOT VERSION OUTDIR: turns the tree `make install` staged in
# ROOT (PREFIX=/usr) into OUTDIR/netbridge_VERSION_ARCH.deb with dpkg-deb.
# Adds what Debian policy asks of a binary package: stripped binaries,
# compressed manual pages and changelog, the copyright file, conffiles,
# md5sums, the shared-library dependencies (dpkg-shlibdeps) and the
# maintainer scripts of this directory. Needs dpkg-dev; no root (files are
# owned by root in the archive through --root-owner-group).
set -euo pipefail

if [[ $# -ne 3 ]]; then
    echo "usage: $0 ROOT VERSION OUTDIR" >&2
    exit 2
fi
root=$(realpath "$1")
version=$2
out=$3
here=$(dirname "$(realpath "$0")")
repo=$(realpath "$here/../..")
arch=$(dpkg --print-architecture)
doc=$root/usr/share/doc/netbridge

# Reproducible: the archive's dates and the changelog's from the last commit.
: "${SOURCE_DATE_EPOCH:=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH

strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$root/usr/bin/netbridge" "$root/usr/sbin/netbridge-agent"
gzip -9nf "$root"/usr/share/man/man*/*
install -m 0644 "$here/copyright" "$doc/copyright"
{
    printf 'netbridge (%s) unstable; urgency=medium\n\n' "$version"
    printf '  * Built from the netbridge repository; see README.md.\n\n'
    printf ' -- netbridge developers <netbridge@example.org>  %s\n' \
        "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.Debian.gz"

install -d -m 0755 "$root/DEBIAN"
install -m 0755 "$here/postinst" "$here/prerm" "$here/postrm" "$root/DEBIAN/"
# Everything the package puts in /etc is a conffile: dpkg keeps the admin's
# changes on upgrade and removes them only on purge.
(cd "$root" && find etc -type f -printf '/%p\n' | sort) >"$root/DEBIAN/conffiles"

# dpkg-shlibdeps wants a source tree's debian/control; a throwaway one will do.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/debian"
printf 'Source: netbridge\n\nPackage: netbridge\nArchitecture: any\n' >"$work/debian/control"
shlibs=$(cd "$work" && dpkg-shlibdeps -O "$root/usr/bin/netbridge" "$root/usr/sbin/netbridge-agent" |
    sed -n 's/^shlibs:Depends=//p')
# A build linked against an older glibc (PACKAGE_GLIBC) needs only the newest
# GLIBC_ symbol version it references; dpkg-shlibdeps would take a newer one
# from this machine's symbols files (Debian 12 dates the libpthread and libdl
# stubs such a build links from 2.34).
glibc=$(objdump -T "$root/usr/bin/netbridge" "$root/usr/sbin/netbridge-agent" |
    sed -n 's/.*GLIBC_\([0-9][0-9.]*\).*/\1/p' | sort -uV | tail -n 1)
shlibs=$(sed "s/libc6 (>= [^)]*)/libc6 (>= $glibc)/" <<<"$shlibs")

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    -e "s/@SHLIBS@/$shlibs/" "$here/control.in" >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) >"$root/DEBIAN/md5sums"

mkdir -p "$out"
dpkg-deb --root-owner-group -Zxz -z6 --build "$root" "$out/netbridge_${version}_${arch}.deb"
