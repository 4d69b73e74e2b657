#!/bin/bash
# The real-node suite (opt-in, needs root and the VM image of ../shared/tools/vm: see tests/vm/README.md).
#   tests/vm/run.sh [--ansible] OUT_DIR [TIMEOUT_SECONDS]
# Boots a control-plane VM and a worker VM (run-pair.sh) with the release binary (cargo build --release)
# and the payloads beside this script; prints both nodes' results and the timeline.
# --ansible: the payloads ansible-control-plane and ansible-worker instead: Ansible, from a virtualenv
# made here with Debian's python3 (the VMs' own), drives both nodes from the control-plane VM with the
# collection in ansible/, installing kscript from the release tarball (dist/build.sh: target/dist).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
tools=${KSCRIPT_VM_TOOLS:-$repo/../shared/tools/vm}
V=${VM_HOME:-/var/tmp/kscript-vm}
suite=plain
[ "${1:-}" = --ansible ] && { suite=ansible; shift; }
[ $# -ge 1 ] || { echo "usage: $0 [--ansible] OUT_DIR [TIMEOUT_SECONDS]" >&2; exit 2; }
out=$1 timeout=${2:-3600}
bin=${KSCRIPT_BIN:-$repo/target/release/kscript}
[ -x "$bin" ] || { echo "$bin missing: cargo build --release" >&2; exit 2; }
if [ $suite = ansible ]; then
  tarball=${KSCRIPT_TARBALL:-$(ls "$repo"/target/dist/kscript-*-x86_64-unknown-linux-gnu.tar.gz 2>/dev/null | head -1)}
  [ -f "$tarball" ] || { echo "no release tarball in target/dist: dist/build.sh (or KSCRIPT_TARBALL)" >&2; exit 2; }
  [ "$(/usr/bin/python3 -c 'import sys; print(sys.version_info[:2] == (3, 11))')" = True ] \
    || { echo "/usr/bin/python3 is not Debian 12's Python 3.11, which the VMs run the virtualenv with" >&2; exit 2; }
fi
[ -f "$V/vm.img" ] && [ -x "$V/pause" ] && [ -x "$V/bundle/kubelet" ] \
  || { echo "no VM image in $V: see $tools/README.md (build-image.sh)" >&2; exit 2; }
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
# Stand-in images, named as such: the bundle has no CoreDNS image (init's ImagePull check asks for every
# image init needs), so the pause program goes under CoreDNS's name; and the bundle's etcd (Debian's 3.4)
# is tagged as the image build was told, which need not be the tag kscript pins for the release.
version=$("$V/bundle/kubelet" --version | awk '{print $2}')
images=$("$bin" run images.rhai --only list --set kubernetesVersion="$version" 2>/dev/null)
coredns=$(grep -o '[^ ]*/coredns:[^ ]*' <<< "$images" | head -1)
etcd=$(grep -o '[^ ]*/etcd:[^ ]*' <<< "$images" | head -1)
[ -n "$coredns" ] && [ -n "$etcd" ] || { echo "cannot tell the images of $version: $images" >&2; exit 1; }
libs=(); for l in $(ldd /usr/bin/etcd 2>/dev/null | awk '/=> \// {print $3} /^\t\/lib64\// {print $1}'); do libs+=("$l=$l"); done
prefix=; [ $suite = ansible ] && prefix=ansible-
for r in control-plane worker; do
  cp -a "$repo/tests/vm/$prefix$r" "$w/$r"; mkdir -p "$w/$r/images"
  [ $suite = ansible ] || install -m 0755 "$bin" "$w/$r/kscript"
  python3 "$tools/oci-image.py" "$w/$r/images/coredns-stand-in.tar" "$coredns" '["/pause"]' "$V/pause=/pause" > /dev/null
done
python3 "$tools/oci-image.py" "$w/control-plane/images/etcd-stand-in.tar" "$etcd" '["/usr/local/bin/etcd"]' \
  /usr/bin/etcd=/usr/local/bin/etcd link:/usr/bin/etcd=/usr/local/bin/etcd "${libs[@]}" > /dev/null
if [ $suite = ansible ]; then
  # The controller's SSH key (both nodes let it in), Ansible in a virtualenv that runs as /payload/venv
  # in the VM (same Debian Python; it is started as venv/bin/python3 -m ansible, so its scripts' paths
  # do not matter), the collection, and the release tarball the playbook installs kscript from.
  mkdir -p "$w/control-plane/ssh" "$w/worker/ssh"
  ssh-keygen -q -t ed25519 -N '' -C kscript-vm-controller -f "$w/control-plane/ssh/id_ed25519"
  cp "$w/control-plane/ssh/id_ed25519.pub" "$w/worker/ssh/"
  /usr/bin/python3 -m venv "$w/control-plane/venv"
  "$w/control-plane/venv/bin/pip" install -q --disable-pip-version-check ansible-core==2.19.14
  mkdir -p "$w/control-plane/collections/ansible_collections/kscript"
  cp -r "$repo/ansible" "$w/control-plane/collections/ansible_collections/kscript/kscript"
  cp "$tarball" "$w/control-plane/"
  echo "Ansible $("$w/control-plane/venv/bin/python3" -m ansible playbook --version | head -1); release $(basename "$tarball")"
fi
echo "Kubernetes $version; stand-ins: $coredns, $etcd (Debian's etcd); VMs from $V"
[ $suite = ansible ] && PAYLOAD_SIZE=${PAYLOAD_SIZE:-384M}
PAYLOAD_SIZE=${PAYLOAD_SIZE:-160M} "$tools/run-pair.sh" "$w/control-plane" "$w/worker" "$out" "$timeout"
