#!/bin/bash
# Real-node payload (the control-plane VM of ../shared/tools/vm/run-pair.sh, `tests/vm/run.sh --ansible`):
# the Ansible controller. The VMs reach only each other, so Ansible runs here, from the virtualenv on this
# payload disk, and drives both nodes (this one and the worker) over SSH on the pair's link with the
# collection kscript.kscript and its playbook kscript.kscript.cluster:
#   P. the playbook in check mode with --diff: diffs shown, nothing changed on either node;
#   Q. the playbook: kscript installed from the release tarball, the control plane inits, the worker joins;
#   R. the playbook again: changed=0 on both hosts;
#   S. Ansible's overhead: a dry run of stages 1-2 on both nodes, by the playbook and by kscript alone.
# The pod network is skipped (kscript_skip: network): the air-gap bundle has no Flannel images.
set -u
OUT=${OUT:-/payload/out}; mkdir -p "$OUT"
. /payload/pair.env
ev() { echo "$(date +%s.%N) cp $*" >> "$OUT/events.txt"; }
el() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }
fail=0
install -d -m 0700 /root/.ssh
install -m 0600 /payload/ssh/id_ed25519 /root/.ssh/id_ed25519
install -m 0600 /payload/ssh/id_ed25519.pub /root/.ssh/authorized_keys
systemctl start ssh
cp /payload/images/*.tar /var/lib/k8s-bundle/images/ 2>/dev/null || true
VERSION=$(/var/lib/k8s-bundle/kubelet --version | awk '{print $2}')
tarball=$(ls /payload/kscript-*.tar.gz)
W=/root/ansible; mkdir -p $W
cat > $W/inventory.ini <<INV
[control_plane]
$CP_NAME ansible_host=$CP_IP kscript_advertise_address=$CP_IP

[workers]
$WORKER_NAME ansible_host=$WORKER_IP kscript_advertise_address=$WORKER_IP

[all:vars]
ansible_user=root
ansible_ssh_private_key_file=/root/.ssh/id_ed25519
ansible_ssh_common_args='-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no'
ansible_python_interpreter=/usr/bin/python3
INV
cat > $W/vars.yml <<VARS
kscript_release_tarball: $tarball
kscript_kubernetes_version: "$VERSION"
kscript_skip: [network]
# Under TCG the API server may take longer than 10 s to answer a list.
kscript_status_timeout: 30
kscript_extra_args: [--ignore-preflight-errors, "NumCPU,Mem"]
kscript_settings:
  kscript.kubernetes.source: bundle
  kscript.kubernetes.bundleDir: /var/lib/k8s-bundle
  timeouts.controlPlaneComponentHealthCheck: 15m0s
  timeouts.discovery: 20m0s
  timeouts.tlsBootstrap: 10m0s
VARS
export ANSIBLE_COLLECTIONS_PATH=/payload/collections ANSIBLE_HOME=$W/home ANSIBLE_FORCE_COLOR=0
export ANSIBLE_PIPELINING=1 ANSIBLE_HOST_KEY_CHECKING=0 ANSIBLE_STDOUT_CALLBACK=default
ansible() { /payload/venv/bin/python3 -m ansible "$@"; }
playbook() { ansible playbook -i $W/inventory.ini -e @$W/vars.yml "$@"; }
recap() { sed -n '/^PLAY RECAP/,$p' "$1"; }
on_worker() { ssh -i /root/.ssh/id_ed25519 -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o ConnectTimeout=5 "root@$WORKER_IP" "$@"; }
finish() {
  ev "done rc=$fail"
  on_worker "echo $fail > /run/kscript-ansible-done" 2>/dev/null
  exit $fail
}

ev "wait-ssh-start"
for _ in $(seq 1 300); do on_worker true 2>/dev/null && break; sleep 2; done
on_worker true 2>/dev/null || { echo "the worker's sshd never answered"; fail=1; finish; }
ev "wait-ssh-end"
echo "Ansible $(ansible playbook --version | head -1); Kubernetes $VERSION; release $(basename "$tarball")"

# What must not change in check mode, on both nodes: these paths (a file by its hash, a folder by
# its entries) and the units' states.
marks() {
  for p in /etc/kubernetes /var/lib/kubelet /var/lib/kscript /etc/containerd /usr/local/bin/kscript /usr/bin/kubelet \
           /usr/local/bin/kubelet /etc/systemd/system/kubelet.service /etc/cni/net.d /opt/cni/bin; do
    if [ -f $p ]; then echo "$p $(sha256sum < $p)"
    elif [ -d $p ]; then echo "$p $(find $p | sort | sha256sum)"
    else echo "$p absent"; fi
  done
  for u in containerd kubelet; do echo "$u $(systemctl is-enabled $u 2>&1) $(systemctl is-active $u 2>&1)"; done
}
before_cp=$(marks); before_w=$(on_worker "$(declare -f marks); marks")

ev "P-start"; s=$(date +%s.%N)
playbook kscript.kscript.cluster --check --diff > "$OUT/P.log" 2>&1; rcP=$?
ev "P-end rc=$rcP"
echo "P (check mode, --diff): rc=$rcP in $(el $s)s"; recap "$OUT/P.log"
[ $rcP = 0 ] || { tail -60 "$OUT/P.log"; fail=1; }
diffs=$(grep -c '^+++ after' "$OUT/P.log")
echo "P: $diffs diffs shown"
[ "$diffs" -gt 0 ] || { echo "P: check mode showed no diffs"; fail=1; }
[ "$(marks)" = "$before_cp" ] || { echo "P: check mode changed $CP_NAME:"; diff <(echo "$before_cp") <(marks); fail=1; }
after_w=$(on_worker "$(declare -f marks); marks")
[ "$after_w" = "$before_w" ] || { echo "P: check mode changed $WORKER_NAME:"; diff <(echo "$before_w") <(echo "$after_w"); fail=1; }

ev "Q-start"; s=$(date +%s.%N)
playbook kscript.kscript.cluster > "$OUT/Q.log" 2>&1; rcQ=$?
ev "Q-end rc=$rcQ"
echo "Q (the cluster): rc=$rcQ in $(el $s)s"; recap "$OUT/Q.log"
[ $rcQ = 0 ] || { tail -80 "$OUT/Q.log"; fail=1; }
# No bootstrap token of the cluster (the one the module made for the worker among them) in Ansible's output.
tokens=$(kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system get secrets \
  --field-selector type=bootstrap.kubernetes.io/token -o jsonpath='{range .items[*]}{.data.token-secret}{"\n"}{end}' 2>/dev/null)
echo "Q: $(echo "$tokens" | grep -c .) bootstrap tokens in the cluster"
for t in $tokens; do
  grep -qF "$(echo "$t" | base64 -d)" "$OUT/Q.log" && { echo "Q: a bootstrap token is in Ansible's output"; fail=1; }
done
for n in "$CP_NAME" "$WORKER_NAME"; do
  seen=no
  for _ in $(seq 1 150); do
    kubectl --kubeconfig /etc/kubernetes/admin.conf get node "$n" > /dev/null 2>&1 && { seen=yes; break; }
    sleep 2
  done
  echo "Q: node $n registered: $seen"; [ $seen = yes ] || fail=1
done
kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes,pods -A -o wide > "$OUT/cluster.txt" 2>&1; cat "$OUT/cluster.txt"

ev "R-start"; s=$(date +%s.%N)
playbook kscript.kscript.cluster > "$OUT/R.log" 2>&1; rcR=$?
ev "R-end rc=$rcR"
echo "R (again): rc=$rcR in $(el $s)s"; recap "$OUT/R.log"
[ $rcR = 0 ] || { tail -60 "$OUT/R.log"; fail=1; }
for n in "$CP_NAME" "$WORKER_NAME"; do
  grep -Eq "^$n +: ok=[0-9]+ +changed=0 +unreachable=0 +failed=0" "$OUT/R.log" \
    || { echo "R: $n reported changes or failures"; grep -B3 '^changed:' "$OUT/R.log" | head -40; fail=1; }
done

# S. Overhead: stages 1-2 of each node's script in dry run, by the playbook (kscript_stages, check mode)
# and by kscript alone over the same SSH link; each 3 times, the median kept.
median() { sort -n | sed -n 2p; }
tp=$(for _ in 1 2 3; do t=$(date +%s.%N); playbook kscript.kscript.cluster --check -e '{"kscript_stages": ["containerd", "kubelet"]}' > "$OUT/S.log" 2>&1 || echo "S: playbook failed" >&2; el $t; echo; done | median)
dry() { echo "kscript run $1 --only containerd --only kubelet --dry-run --output json --set kubernetesVersion=$VERSION --set kscript.kubernetes.source=bundle --set kscript.kubernetes.bundleDir=/var/lib/k8s-bundle > /dev/null"; }
ta=$(for _ in 1 2 3; do t=$(date +%s.%N)
  ssh -i /root/.ssh/id_ed25519 -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no "root@$CP_IP" "$(dry control-plane.rhai)" 2>/dev/null &
  on_worker "$(dry worker.rhai)" 2>/dev/null; wait; el $t; echo; done | median)
tasks=$(grep -c '^TASK \[' "$OUT/S.log")
echo "S: stages 1-2 dry run on both nodes: playbook ${tp}s ($tasks tasks), kscript alone over SSH ${ta}s (median of 3)"
echo "$tp $ta $tasks" > "$OUT/S.seconds"
finish
