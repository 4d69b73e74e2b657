#!/bin/bash
# Real-node payload (the control-plane VM of ../shared/tools/vm/run-pair.sh, `tests/vm/run.sh --upgrade TO_BIN`):
# a cluster built at the image's release is upgraded to the next one with upgrade.rhai, as kubeadm upgrade does.
#   I. control-plane.rhai at the image bundle's release (the pod network skipped: the bundle has no Flannel);
#   J. upgrade.rhai's plan to the target (its images imported first: the node is air-gapped, as plan's refusal says);
#   K. upgrade.rhai --only apply: etcd and the control plane one at a time, the cluster's objects, this kubelet;
#      K2: apply again changes nothing;
#   L. what must still work: the API server at the target, each static Pod on the target image, this Node's kubelet
#      at the target, each kubeconfig's identity, an object written and read back, the backups in /etc/kubernetes/tmp;
#   M. the worker runs upgrade.rhai --only node once the cluster says the target (upgrade-worker waits for it), and
#      its Node's kubelet reports the target; it runs node again (nothing changes) and labels its Node done.
set -u
OUT=${OUT:-/payload/out}; mkdir -p "$OUT"
. /payload/pair.env
ev() { echo "$(date +%s.%N) cp $*" >> "$OUT/events.txt"; }
el() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }
fail=0
install -m 0755 /payload/kscript /usr/local/bin/kscript
install -d -m 0755 /etc/kubernetes/pki
install -m 0644 /payload/pki/ca.crt /etc/kubernetes/pki/ca.crt
install -m 0600 /payload/pki/ca.key /etc/kubernetes/pki/ca.key
cp /payload/images/*.tar /var/lib/k8s-bundle/images/ 2>/dev/null || true
FROM=$(/var/lib/k8s-bundle/kubelet --version | awk '{print $2}')
TO=$(/payload/bundle-to/kubelet --version | awk '{print $2}')
# The target's bundle: its binaries and images, the CNI plugins of the image's bundle.
cp -a /payload/bundle-to /var/lib/k8s-bundle-to
cp /var/lib/k8s-bundle/cni-plugins-*.tgz /var/lib/k8s-bundle-to/
COMMON=(--set kscript.kubernetes.source=bundle
        --set localAPIEndpoint.advertiseAddress="$NODE_IP" --set nodeRegistration.name="$NODE_NAME"
        --set timeouts.controlPlaneComponentHealthCheck=15m0s)
A=/etc/kubernetes/admin.conf
echo "upgrade $FROM -> $TO"

ev "init-start"; s=$(date +%s.%N)
kscript run control-plane.rhai --skip network --set kubernetesVersion="$FROM" --set kscript.kubernetes.bundleDir=/var/lib/k8s-bundle \
  "${COMMON[@]}" --set 'bootstrapTokens=[{token: abcdef.0123456789abcdef}]' --ignore-preflight-errors NumCPU,Mem > "$OUT/I.log" 2>&1; rc=$?
ev "init-end rc=$rc"
echo "I (init at $FROM): rc=$rc in $(el $s)s"; [ $rc = 0 ] || { tail -40 "$OUT/I.log"; exit 1; }

for _ in $(seq 1 450); do kubectl --kubeconfig $A get node "$WORKER_NAME" > /dev/null 2>&1 && break; sleep 2; done
kubectl --kubeconfig $A get node "$WORKER_NAME" > /dev/null 2>&1 || { echo "the worker never registered"; fail=1; }
ev "worker-seen"

# The node is air-gapped: the target's images go into containerd as an operator would (plan refuses otherwise).
for f in /var/lib/k8s-bundle-to/images/*.tar; do ctr -n k8s.io images import "$f" > /dev/null || { echo "import $f failed"; fail=1; }; done
# No Node is Ready without a pod network: ControlPlaneNodesReady ignored by name, as kubeadm allows.
UP=(--set kubernetesVersion="$TO" --set kscript.kubernetes.bundleDir=/var/lib/k8s-bundle-to "${COMMON[@]}"
    --ignore-preflight-errors ControlPlaneNodesReady)
ev "plan-start"; s=$(date +%s.%N)
kscript run upgrade.rhai "${UP[@]}" > "$OUT/J.log" 2>&1; rc=$?
ev "plan-end rc=$rc"
echo "J (plan): rc=$rc in $(el $s)s"; sed -n '/COMPONENT\|component/,/^ *ok/p' "$OUT/J.log" | head -30
[ $rc = 0 ] || { tail -30 "$OUT/J.log"; fail=1; }

ev "apply-start"; s=$(date +%s.%N)
kscript run upgrade.rhai --only apply "${UP[@]}" -v > "$OUT/K.log" 2>&1; rc=$?
tK=$(el $s)
ev "apply-end rc=$rc"
echo "K (apply): rc=$rc in ${tK}s"; grep -E '^  (ok|changed|skipped|failed) |RECAP|^  [a-z]' "$OUT/K.log" | grep -v '^  [+~=!-] ' | tail -40
if [ $rc != 0 ]; then
  tail -60 "$OUT/K.log"; fail=1
  # What the node shows: the kubelet's log since apply began, the runtime's pods and containers, the manifests.
  { date; ls -la --time-style=full-iso /etc/kubernetes/manifests; md5sum /etc/kubernetes/manifests/*
    crictl pods; crictl ps -a; ctr -n k8s.io containers ls
    kubectl --kubeconfig $A -n kube-system get pods -o wide
    kubectl --kubeconfig $A -n kube-system get pod "etcd-$NODE_NAME" -o yaml
    journalctl -u kubelet --no-pager --since "@${s%.*}"; } > "$OUT/K-diag.txt" 2>&1
  # K3. The rest of apply with etcd left as it is (kubeadm's --etcd-upgrade=false): what follows etcd.
  UP+=(--set upgrade.etcdUpgrade=false)
  s=$(date +%s.%N)
  kscript run upgrade.rhai --only apply "${UP[@]}" -v > "$OUT/K3.log" 2>&1; rc=$?
  echo "K3 (apply, etcd left as it is): rc=$rc in $(el $s)s"; grep -E '^  (ok|changed|skipped|failed) |RECAP' "$OUT/K3.log" | tail -20
  [ $rc = 0 ] || tail -40 "$OUT/K3.log"
fi
# K2. apply again: nothing left to do, so nothing changes (no backup, no restart, no renewal).
s=$(date +%s.%N)
kscript run upgrade.rhai --only apply "${UP[@]}" --output json > "$OUT/K2.json" 2>"$OUT/K2.err"; rc=$?
k2=$(python3 - "$OUT/K2.json" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
changed = [s["name"] for s in lines if s.get("type") == "step" and s.get("outcome") == "changed"]
result = [l for l in lines if l.get("type") == "result"]
print(f"changed={result[-1]['changed'] if result else '?'} steps={','.join(changed) or '-'}")
PY
)
echo "K2 (apply again): rc=$rc in $(el $s)s, $k2"
[ $rc = 0 ] && [[ $k2 == "changed=False steps=-" ]] || { tail -5 "$OUT/K2.err"; fail=1; }

# L. What must still work.
server=$(kubectl --kubeconfig $A version -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')
echo "L: API server $server"; [ "$server" = "$TO" ] || { echo "L: the API server is not at $TO"; fail=1; }
for c in kube-apiserver kube-controller-manager kube-scheduler; do
  img=$(kubectl --kubeconfig $A -n kube-system get pod "$c-$NODE_NAME" -o jsonpath='{.spec.containers[0].image}' 2>&1)
  echo "L: $c runs $img"; [[ $img == *":$TO" ]] || fail=1
done
kv=; for _ in $(seq 1 150); do
  kv=$(kubectl --kubeconfig $A get node "$NODE_NAME" -o jsonpath='{.status.nodeInfo.kubeletVersion}' 2>/dev/null); [ "$kv" = "$TO" ] && break; sleep 2; done
echo "L: $NODE_NAME's kubelet reports $kv"; [ "$kv" = "$TO" ] || fail=1
proxy=$(kubectl --kubeconfig $A -n kube-system get ds kube-proxy -o jsonpath='{.spec.template.spec.containers[0].image}')
stored=$(kubectl --kubeconfig $A -n kube-system get cm kubeadm-config -o jsonpath='{.data.ClusterConfiguration}' | awk '/^kubernetesVersion:/ {print $2}')
echo "L: kube-proxy $proxy; kubeadm-config kubernetesVersion $stored"
[[ $proxy == *":$TO" ]] && [ "$stored" = "$TO" ] || fail=1
for k in admin super-admin controller-manager scheduler kubelet; do
  [ -f /etc/kubernetes/$k.conf ] || continue
  who=$(kubectl --kubeconfig /etc/kubernetes/$k.conf auth whoami -o jsonpath='{.status.userInfo.username}' 2>&1)
  echo "L: $k.conf is $who"; [ -n "$who" ] && [[ $who != *rror* ]] || fail=1
done
kubectl --kubeconfig $A -n default create configmap upgraded --from-literal=to="$TO" > /dev/null 2>&1
got=$(kubectl --kubeconfig $A -n default get configmap upgraded -o jsonpath='{.data.to}' 2>&1)
echo "L: a ConfigMap written and read back: $got"; [ "$got" = "$TO" ] || fail=1
echo "L: backups:"; ls /etc/kubernetes/tmp | sed 's/^/  /'
ls -d /etc/kubernetes/tmp/kubeadm-backup-manifests-* > /dev/null 2>&1 || { echo "L: no manifests backup"; fail=1; }
kubectl --kubeconfig $A get nodes,pods -A -o wide > "$OUT/cluster.txt" 2>&1; cat "$OUT/cluster.txt"

# M. The worker upgrades its kubelet (upgrade.rhai --only node) once kubeadm-config says the target.
wv=; for _ in $(seq 1 450); do
  wv=$(kubectl --kubeconfig $A get node "$WORKER_NAME" -o jsonpath='{.status.nodeInfo.kubeletVersion}' 2>/dev/null); [ "$wv" = "$TO" ] && break; sleep 2; done
ev "worker-kubelet=$wv"
echo "M: $WORKER_NAME's kubelet reports $wv"; [ "$wv" = "$TO" ] || fail=1
# The worker runs node again once more and labels its Node when done: this node serves until then.
done_=; for _ in $(seq 1 300); do
  done_=$(kubectl --kubeconfig $A get node "$WORKER_NAME" -o jsonpath='{.metadata.labels.kscript\.test/upgrade}' 2>/dev/null); [ "$done_" = done ] && break; sleep 2; done
echo "M: $WORKER_NAME says its upgrade is ${done_:-not done}"; [ "$done_" = done ] || fail=1
journalctl -u kubelet --no-pager > "$OUT/kubelet.journal" 2>&1
exit $fail
