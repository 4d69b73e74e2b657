#!/usr/bin/env bash
# Builds kscript's release artefacts into target/dist/ (the one command for a release):
#
#   dist/build.sh
#
#   target/dist/kscript-VERSION-x86_64-unknown-linux-gnu.tar.gz
#       kscript-VERSION-x86_64-unknown-linux-gnu/{kscript, kscript.1, README.md, LICENSE,
#       completions/kscript.bash, completions/_kscript, completions/kscript.fish}
#   target/dist/kscript_VERSION_amd64.deb
#   target/dist/kscript-VERSION-1.x86_64.rpm
#   target/dist/SHA256SUMS
#
# The binary needs at most glibc 2.28 (RHEL/Rocky 8, Debian 11, Ubuntu 20.04 and later): it is
# linked by cargo-zigbuild, which has Zig's C toolchain compile the C parts (aws-lc) and link
# against glibc 2.28's symbol versions, while rustc, cargo and the crates stay the usual ones.
# A musl build (no glibc at all) was not chosen: it needs the musl Rust standard library, which
# is not on the project's machines and rustup cannot download there. Nor is aarch64's: x86_64
# only, for now.
#
# Needs: cargo, protoc (Debian's protobuf-compiler), Python's pip for cargo-zigbuild and the
# ziglang package (installed here, pinned, if missing: both ship prebuilt binaries on PyPI),
# dpkg-deb (dpkg) and rpmbuild (Debian's rpm package).
#
# Packages: dpkg-deb and rpmbuild are the formats' own reference tools, packaged by Debian, so
# CI installs them with apt and compiles nothing; cargo-deb and cargo-generate-rpm would be
# compiled from crates.io in every fresh CI. Each package holds the binary, the completions and
# the man page, nothing else.
#
# Idempotent: each run rebuilds target/dist/ and the kscript crate from scratch (about two
# minutes; the dependencies are built once, about ten minutes on 2 cores).
# KSCRIPT_DIST_TARGET_DIR, when set, is cargo's target folder for this build (CI keeps one in
# /var/tmp, so that a machine's second run rebuilds only kscript); the default is target/.
# No strip step, no profile change: the release profile already drops debug info, and the Zig
# linker leaves no symbol table either (22.6 MB; a native `cargo build --release` keeps its
# symbols: 28.4 MB, 22.5 MB stripped). Panics still name their source line.
set -euo pipefail
cd "$(dirname "$0")/.."

ZIGBUILD_VERSION=0.24.0
ZIG_VERSION=0.17.0
TARGET=x86_64-unknown-linux-gnu
GLIBC=2.28

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
out=target/dist
name="kscript-$version-$TARGET"

pip_has() { python3 -m pip show -q "$1" 2>/dev/null && [ "$(python3 -m pip show "$1" | sed -n 's/^Version: //p')" = "$2" ]; }
if ! pip_has cargo-zigbuild "$ZIGBUILD_VERSION" || ! pip_has ziglang "$ZIG_VERSION"; then
  python3 -m pip install -q --disable-pip-version-check "cargo-zigbuild==$ZIGBUILD_VERSION" "ziglang==$ZIG_VERSION"
fi
for tool in dpkg-deb rpmbuild protoc; do
  command -v "$tool" >/dev/null || { echo "dist/build.sh: $tool is missing (see the header for its package)" >&2; exit 1; }
done

# pip's scripts folder need not be on PATH; cargo-zigbuild finds zig as `python3 -m ziglang`.
zigbuild="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/cargo-zigbuild"
build_dir=${KSCRIPT_DIST_TARGET_DIR:-target}
# kscript itself is always built again (its dependencies are kept), so that --version names
# the commit and dirty state of this very tree: build.rs does not rerun on every edit, and in a
# folder shared by checkouts cargo tells their builds apart by file times only.
cargo clean --quiet --release --target "$TARGET" --target-dir "$build_dir" -p kscript
# KSCRIPT_GLIBC: `kscript --version` says which glibc the binary was built against (build.rs).
KSCRIPT_GLIBC=$GLIBC "$zigbuild" zigbuild --release --locked --target "$TARGET.$GLIBC" --target-dir "$build_dir"
bin="$build_dir/$TARGET/release/kscript"

rm -rf "$out"
mkdir -p "$out/$name/completions"
stage="$out/$name"
install -m 0755 "$bin" "$stage/kscript"
"$bin" completions bash > "$stage/completions/kscript.bash"
"$bin" completions zsh > "$stage/completions/_kscript"
"$bin" completions fish > "$stage/completions/kscript.fish"
"$bin" man > "$stage/kscript.1"
install -m 0644 README.md LICENSE "$stage/"

# Reproducible archives and packages: the commit's time, sorted names, no owner names, no
# build host (two runs on one commit give the same SHA256SUMS).
epoch=$(git log -1 --format=%ct 2>/dev/null || echo 0)
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" -C "$out" -cf - "$name" \
  | gzip -9n > "$out/$name.tar.gz"

# The file tree both packages install (paths as Debian and Fedora's shells look for them).
tree="$out/pkgroot"
install -D -m 0755 "$stage/kscript" "$tree/usr/bin/kscript"
install -D -m 0644 "$stage/completions/kscript.bash" "$tree/usr/share/bash-completion/completions/kscript"
install -D -m 0644 "$stage/completions/_kscript" "$tree/usr/share/zsh/vendor-completions/_kscript"
install -D -m 0644 "$stage/completions/kscript.fish" "$tree/usr/share/fish/vendor_completions.d/kscript.fish"
mkdir -p "$tree/usr/share/man/man1"
gzip -9n < "$stage/kscript.1" > "$tree/usr/share/man/man1/kscript.1.gz"
find "$tree" -exec touch -h -d "@$epoch" {} +
summary="Bootstrap Kubernetes nodes with scripts you can read and edit"

# .deb: a control file and the tree.
deb="$out/debroot"
cp -a "$tree" "$deb"
mkdir -p "$deb/DEBIAN"
cat > "$deb/DEBIAN/control" <<CONTROL
Package: kscript
Version: $version
Architecture: amd64
Maintainer: kscript developers <kscript@invalid>
Section: admin
Priority: optional
Depends: libc6 (>= $GLIBC)
Installed-Size: $(du -sk --exclude=DEBIAN "$deb" | cut -f1)
Description: $summary
 kubeadm's phases as Rhai scripts: kscript builds Kubernetes control-plane and worker
 nodes, renders them into a folder for review, or prints what it would change.
CONTROL
SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zgzip --build "$deb" "$out/kscript_${version}_amd64.deb" >/dev/null

# .rpm: a spec whose %install copies the same tree; rpmbuild adds the requirements on glibc's
# symbol versions it reads from the binary (libc.so.6(GLIBC_2.28)(64bit) at most).
rpmtop=$(realpath -m "$out/rpmbuild")
mkdir -p "$rpmtop/SPECS"
cat > "$rpmtop/SPECS/kscript.spec" <<SPEC
Name: kscript
Version: $version
Release: 1
Summary: $summary
License: Apache-2.0
BuildArch: x86_64
%description
kubeadm's phases as Rhai scripts: kscript builds Kubernetes control-plane and worker nodes,
renders them into a folder for review, or prints what it would change.
%global debug_package %{nil}
%global __strip /bin/true
%global __brp_strip /bin/true
%install
cp -a $(realpath "$tree")/. %{buildroot}/
%files
%attr(0755,root,root) /usr/bin/kscript
%attr(0644,root,root) /usr/share/bash-completion/completions/kscript
%attr(0644,root,root) /usr/share/zsh/vendor-completions/_kscript
%attr(0644,root,root) /usr/share/fish/vendor_completions.d/kscript.fish
%attr(0644,root,root) /usr/share/man/man1/kscript.1.gz
SPEC
SOURCE_DATE_EPOCH=$epoch rpmbuild --quiet -bb --define "_topdir $rpmtop" --define "_build_id_links none" \
  --define "__os_install_post %{nil}" --define "use_source_date_epoch_as_buildtime 1" \
  --define "clamp_mtime_to_source_epoch 1" --define "_buildhost reproducible" "$rpmtop/SPECS/kscript.spec"
cp "$rpmtop/RPMS/x86_64/kscript-$version-1.x86_64.rpm" "$out/"
rm -rf "$tree" "$deb" "$rpmtop"

(cd "$out" && sha256sum "$name.tar.gz" "kscript_${version}_amd64.deb" "kscript-$version-1.x86_64.rpm" > SHA256SUMS)
echo "dist/build.sh: wrote $out/:"
ls -l "$out"
