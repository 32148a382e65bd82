#!/usr/bin/env bash
# Builds the Debian package nuc from the release binaries: stages the tree under
# TARGET_DIR/debian/stage and writes TARGET_DIR/debian/nuc_VERSION_ARCH.deb.
#
#   packaging/debian/build-deb.sh TARGET_DIR      (run by `make deb`)
#
# Why dpkg-deb from a staged tree rather than cargo-deb: every tool it needs is Debian's own
# (dpkg-deb, dpkg-shlibdeps, help2man, gzip, strip), installed by the Makefile; nothing more
# to compile or to pin, and the staged tree is the exact input of `systemd-analyze verify`.
# The package is small and of one architecture: a debian/ source tree with debhelper would
# rebuild what cargo built already.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${1:?usage: build-deb.sh TARGET_DIR}
release="$target/release"

# Upstream version from the workspace, Debian revision 1 (the changelog's first entry).
upstream=$(awk -F'"' '/^\[workspace.package\]/ { w = 1; next } /^\[/ { w = 0 } w && $1 ~ /^version *= */ { print $2; exit }' "$root/Cargo.toml")
revision=$(sed -n '1s/^nuc (\([^)]*\)).*/\1/p' "$here/changelog")
version=$revision
if [ "${revision%-*}" != "$upstream" ]; then
    echo "build-deb: packaging/debian/changelog says $revision, the workspace $upstream: add a changelog entry" >&2
    exit 1
fi
arch=$(dpkg --print-architecture)

for bin in nuc nuc-registry; do
    [ -x "$release/$bin" ] || { echo "build-deb: $release/$bin missing: build the release first (make deb does)" >&2; exit 1; }
done

out="$target/debian"
# One package in out/ at a time: the tests install the nuc_*.deb they find there.
mkdir -p "$out"
rm -f "$out"/nuc_*.deb
stage="$out/stage"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"
umask 022

# Binaries, stripped (the release profile keeps line tables for backtraces; the package ships
# without them, as Debian does, to stay small).
for bin in nuc nuc-registry; do
    install -D -m 0755 "$release/$bin" "$stage/usr/bin/$bin"
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/$bin"
done

# Units (Debian 12 keeps packaged units under /lib).
for unit in nuc.service nuc-registry.service nuc-publish-crls.service nuc-publish-crls.timer; do
    install -D -m 0644 "$here/$unit" "$stage/lib/systemd/system/$unit"
done

# /etc/nuc: conffiles. nuc.env gets its group nuc in postinst (the group is made there).
install -D -m 0640 "$here/nuc.env" "$stage/etc/nuc/nuc.env"
install -D -m 0644 "$here/README.etc" "$stage/etc/nuc/README"

# Documentation: copyright, Debian changelog, README.Debian, man pages from --help.
doc="$stage/usr/share/doc/nuc"
install -D -m 0644 "$here/copyright" "$doc/copyright"
install -m 0644 "$here/README.Debian" "$doc/README.Debian"
gzip -9n -c "$here/changelog" > "$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"
mkdir -p "$stage/usr/share/man/man1"
help2man --no-info --no-discard-stderr --section=1 \
    --name="NUC RK core service: CA administration and the service itself" \
    "$stage/usr/bin/nuc" | gzip -9n > "$stage/usr/share/man/man1/nuc.1.gz"
help2man --no-info --no-discard-stderr --section=1 \
    --name="fixture registry service (GBD FL/UL stand-in) for test installations" \
    "$stage/usr/bin/nuc-registry" | gzip -9n > "$stage/usr/share/man/man1/nuc-registry.1.gz"
chmod 0644 "$stage/usr/share/man/man1/"*.gz

# Lintian overrides, each with its reason (packaging/debian/lintian-overrides).
install -D -m 0644 "$here/lintian-overrides" "$stage/usr/share/lintian/overrides/nuc"

# Control: shared-library dependencies as dpkg-shlibdeps finds them in the binaries (it
# wants a debian/control of a source package beside it: a minimal one in a scratch dir).
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/debian"
printf 'Source: nuc\n\nPackage: nuc\nArchitecture: any\n' > "$scratch/debian/control"
shlibs=$(cd "$scratch" && dpkg-shlibdeps -O "$stage/usr/bin/nuc" "$stage/usr/bin/nuc-registry" | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { echo "build-deb: dpkg-shlibdeps found no dependency" >&2; exit 1; }
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$size/" \
    -e "s/@SHLIBS@/$shlibs/" "$here/control.in" > "$stage/DEBIAN/control"
(cd "$stage" && find etc -type f | sed 's|^|/|' | sort) > "$stage/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$here/$script" "$stage/DEBIAN/$script"
done
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

deb="$out/nuc_${version}_${arch}.deb"
dpkg-deb --build --root-owner-group -Zxz "$stage" "$deb" >/dev/null
echo "$deb"
