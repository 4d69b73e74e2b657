#!/bin/bash
# The real-node suite (opt-in, needs root and the VM image of ../shared/tools/vm: see tests/vm/README.md).
#   tests/vm/run.sh [--ansible | --upgrade TO_BIN] OUT_DIR [TIMEOUT_SECONDS]
# Boots a control-plane VM and a worker VM (run-pair.sh) with the release binary (cargo build --release)
# and the payloads beside this script; prints both nodes' results and the timeline.
# --ansible: the payloads ansible-control-plane and ansible-worker instead: Ansible, from a virtualenv
# made here with Debian's python3 (the VMs' own), drives both nodes from the control-plane VM with the
# collection in ansible/, installing kscript from the release tarball (dist/build.sh: target/dist).
# --upgrade TO_BIN: the payloads upgrade-control-plane and upgrade-worker: the cluster is built at the image's
# release and upgraded with upgrade.rhai to the release of the Kubernetes binaries in TO_BIN (the next minor or
# patch), whose images are made here as build-image.sh makes the image's.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
tools=${KSCRIPT_VM_TOOLS:-$repo/../shared/tools/vm}
V=${VM_HOME:-/var/tmp/kscript-vm}
suite=plain
[ "${1:-}" = --ansible ] && { suite=ansible; shift; }
[ "${1:-}" = --upgrade ] && { suite=upgrade; to_bin=$(realpath "${2:?--upgrade TO_BIN}"); shift 2; }
[ $# -ge 1 ] || { echo "usage: $0 [--ansible | --upgrade TO_BIN] OUT_DIR [TIMEOUT_SECONDS]" >&2; exit 2; }
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
prefix=; [ $suite = plain ] || prefix=$suite-
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
if [ $suite = upgrade ]; then
  # The target's bundle, as build-image.sh makes the image's: its kubelet, kubectl and kubeadm on both payloads;
  # on the control plane's, the images of its control plane and kube-proxy (with the image root's iptables), and
  # stand-ins for its CoreDNS and etcd images (the pause program; Debian's etcd) under the target's tags.
  to=$("$to_bin/kubelet" --version | awk '{print $2}')
  [ "$to" != "$version" ] || { echo "$to_bin holds $to, the image's own release" >&2; exit 2; }
  R=$V/rootfs
  mk() { python3 "$tools/oci-image.py" "$@" > /dev/null; }
  libspecs() { chroot "$R" ldd "$1" | awk '/=> \// {print $3} /^\t\/lib64\// {print $1}' | sort -u | while read -r l; do echo "$R$l=$l"; done; }
  for r in control-plane worker; do
    mkdir -p "$w/$r/bundle-to/images"
    for b in kubelet kubectl kubeadm; do install -m 0755 "$to_bin/$b" "$w/$r/bundle-to/$b"; done
  done
  B=$w/control-plane/bundle-to/images
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    mk "$B/$c.tar" "registry.k8s.io/$c:$to" "[\"/usr/local/bin/$c\"]" "$to_bin/$c=/usr/local/bin/$c" "link:/usr/bin/$c=/usr/local/bin/$c"
  done
  KP=(); for l in $( { libspecs /usr/sbin/xtables-nft-multi; libspecs /usr/sbin/conntrack;
                       for so in "$R"/usr/lib/x86_64-linux-gnu/xtables/*.so; do libspecs "${so#"$R"}"; done; } | sort -u); do KP+=("$l"); done
  for so in "$R"/usr/lib/x86_64-linux-gnu/xtables/*.so; do KP+=("$so=${so#"$R"}"); done
  for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do KP+=("link:/usr/sbin/$n=xtables-nft-multi"); done
  mk "$B/kube-proxy.tar" "registry.k8s.io/kube-proxy:$to" '["/usr/local/bin/kube-proxy"]' \
    "$to_bin/kube-proxy=/usr/local/bin/kube-proxy" link:/usr/bin/kube-proxy=/usr/local/bin/kube-proxy \
    "$R/usr/sbin/xtables-nft-multi=/usr/sbin/xtables-nft-multi" "$R/usr/sbin/conntrack=/usr/sbin/conntrack" "${KP[@]}"
  to_images=$("$bin" run images.rhai --only list --set kubernetesVersion="$to" 2>/dev/null)
  to_coredns=$(grep -o '[^ ]*/coredns:[^ ]*' <<< "$to_images" | head -1)
  to_etcd=$(grep -o '[^ ]*/etcd:[^ ]*' <<< "$to_images" | head -1)
  to_pause=$(grep -o '[^ ]*/pause:[^ ]*' <<< "$to_images" | head -1)
  mk "$B/coredns-stand-in.tar" "$to_coredns" '["/pause"]' "$V/pause=/pause"
  mk "$B/pause.tar" "$to_pause" '["/pause"]' "$V/pause=/pause"
  mk "$B/etcd-stand-in.tar" "$to_etcd" '["/usr/local/bin/etcd"]' \
    /usr/bin/etcd=/usr/local/bin/etcd link:/usr/bin/etcd=/usr/local/bin/etcd "${libs[@]}"
  echo "upgrade to $to; the target's stand-ins: $to_coredns, $to_etcd, $to_pause"
fi
echo "Kubernetes $version; stand-ins: $coredns, $etcd (Debian's etcd); VMs from $V"
[ $suite = ansible ] && PAYLOAD_SIZE=${PAYLOAD_SIZE:-384M}
[ $suite = upgrade ] && PAYLOAD_SIZE=${PAYLOAD_SIZE:-1200M}
PAYLOAD_SIZE=${PAYLOAD_SIZE:-160M} "$tools/run-pair.sh" "$w/control-plane" "$w/worker" "$out" "$timeout"
