#!/bin/bash
# Real-node payload (the worker VM of `tests/vm/run.sh --upgrade TO_BIN`): joins the cluster the control plane
# builds at the image's release, waits until the cluster's kubeadm-config says the target release (the control
# plane's upgrade apply), then runs upgrade.rhai --only node: its kubelet configuration and binary of the target.
set -u
OUT=${OUT:-/payload/out}; mkdir -p "$OUT"
. /payload/pair.env
ev() { echo "$(date +%s.%N) worker $*" >> "$OUT/events.txt"; }
el() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }
install -m 0755 /payload/kscript /usr/local/bin/kscript
cp /payload/images/*.tar /var/lib/k8s-bundle/images/ 2>/dev/null || true
FROM=$(/var/lib/k8s-bundle/kubelet --version | awk '{print $2}')
TO=$(/payload/bundle-to/kubelet --version | awk '{print $2}')
cp -a /payload/bundle-to /var/lib/k8s-bundle-to
cp /var/lib/k8s-bundle/cni-plugins-*.tgz /var/lib/k8s-bundle-to/
ev "join-start"; s=$(date +%s.%N)
kscript run worker.rhai --set kubernetesVersion="$FROM" --set kscript.kubernetes.source=bundle \
  --set kscript.kubernetes.bundleDir=/var/lib/k8s-bundle --set nodeRegistration.name="$NODE_NAME" \
  --set discovery.bootstrapToken.apiServerEndpoint="$CP_IP:6443" --set discovery.bootstrapToken.token=abcdef.0123456789abcdef \
  --set "discovery.bootstrapToken.caCertHashes=[$(cat /payload/ca-cert-hash)]" \
  --set timeouts.discovery=30m0s --set timeouts.tlsBootstrap=10m0s --ignore-preflight-errors NumCPU,Mem > "$OUT/join.log" 2>&1; rc=$?
ev "join-end rc=$rc"
echo "join at $FROM: rc=$rc in $(el $s)s"; [ $rc = 0 ] || { tail -40 "$OUT/join.log"; exit 1; }
K=/etc/kubernetes/kubelet.conf
stored=
for _ in $(seq 1 1200); do
  stored=$(kubectl --kubeconfig $K -n kube-system get cm kubeadm-config -o jsonpath='{.data.ClusterConfiguration}' 2>/dev/null | awk '/^kubernetesVersion:/ {print $2}')
  [ "$stored" = "$TO" ] && break; sleep 3
done
ev "cluster-at=$stored"
echo "the cluster says $stored"; [ "$stored" = "$TO" ] || exit 1
ev "node-start"; s=$(date +%s.%N)
kscript run upgrade.rhai --only node --set kscript.kubernetes.source=bundle --set kscript.kubernetes.bundleDir=/var/lib/k8s-bundle-to \
  --set nodeRegistration.name="$NODE_NAME" -v > "$OUT/node.log" 2>&1; rc=$?
ev "node-end rc=$rc"
echo "upgrade node: rc=$rc in $(el $s)s"; grep -E '^  (ok|changed|skipped|failed) |RECAP|drain|uncordon' "$OUT/node.log" | tail -20
[ $rc = 0 ] || { tail -40 "$OUT/node.log"; exit 1; }
v=; for _ in $(seq 1 150); do
  v=$(kubectl --kubeconfig $K get node "$NODE_NAME" -o jsonpath='{.status.nodeInfo.kubeletVersion}' 2>/dev/null); [ "$v" = "$TO" ] && break; sleep 2; done
echo "this Node's kubelet reports $v; the binary says $(kubelet --version 2>&1)"
# node again: nothing changes (the kubelet not restarted).
kscript run upgrade.rhai --only node --set kscript.kubernetes.source=bundle --set kscript.kubernetes.bundleDir=/var/lib/k8s-bundle-to \
  --set nodeRegistration.name="$NODE_NAME" --output json > "$OUT/node2.json" 2>&1; rc2=$?
again=$(python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]; print("changed=%s steps=%s" % (r[-1].get("changed"), ",".join(s["name"] for s in r if s.get("type")=="step" and s.get("outcome")=="changed") or "-"))' "$OUT/node2.json")
echo "upgrade node again: rc=$rc2, $again"
# Tell the control plane this node is done (its payload powers it off once it sees this label).
kubectl --kubeconfig $K label node "$NODE_NAME" kscript.test/upgrade=done --overwrite > /dev/null 2>&1 || echo "could not label $NODE_NAME done"
journalctl -u kubelet --no-pager > "$OUT/kubelet.journal" 2>&1
[ "$v" = "$TO" ] && [ $rc2 = 0 ] && [ "$again" = "changed=False steps=-" ]
