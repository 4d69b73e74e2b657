#!/bin/bash
# The real-node suite (opt-in, needs root and the VM image of ../shared/tools/vm: see tests/vm/README.md).
#   tests/vm/run.sh OUT_DIR [TIMEOUT_SECONDS]
# Boots a control-plane VM and a worker VM (run-pair.sh) with the release binary (cargo build --release)
# and the payloads beside this script; prints both nodes' results and the timeline.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
tools=${KSCRIPT_VM_TOOLS:-$repo/../shared/tools/vm}
V=${VM_HOME:-/var/tmp/kscript-vm}
[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [TIMEOUT_SECONDS]" >&2; exit 2; }
out=$1 timeout=${2:-3600}
bin=${KSCRIPT_BIN:-$repo/target/release/kscript}
[ -x "$bin" ] || { echo "$bin missing: cargo build --release" >&2; exit 2; }
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
for r in control-plane worker; do
  cp -a "$repo/tests/vm/$r" "$w/$r"; install -m 0755 "$bin" "$w/$r/kscript"; mkdir -p "$w/$r/images"
  python3 "$tools/oci-image.py" "$w/$r/images/coredns-stand-in.tar" "$coredns" '["/pause"]' "$V/pause=/pause" > /dev/null
done
python3 "$tools/oci-image.py" "$w/control-plane/images/etcd-stand-in.tar" "$etcd" '["/usr/local/bin/etcd"]' \
  /usr/bin/etcd=/usr/local/bin/etcd link:/usr/bin/etcd=/usr/local/bin/etcd "${libs[@]}" > /dev/null
echo "Kubernetes $version; stand-ins: $coredns, $etcd (Debian's etcd); VMs from $V"
PAYLOAD_SIZE=${PAYLOAD_SIZE:-160M} "$tools/run-pair.sh" "$w/control-plane" "$w/worker" "$out" "$timeout"
