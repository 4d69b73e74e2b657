#!/bin/bash
# Real-node payload (the worker VM of ../shared/tools/vm/run-pair.sh; see tests/vm/README.md): worker.rhai
# starts at once, while the control plane is still coming up (and is interrupted and rerun there), and must
# join in one run: token discovery waits for the API server and for a signed cluster-info.
set -u
OUT=${OUT:-/payload/out}; mkdir -p "$OUT"
. /payload/pair.env
ev() { echo "$(date +%s.%N) worker $*" >> "$OUT/events.txt"; }
el() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }
install -m 0755 /payload/kscript /usr/local/bin/kscript
cp /payload/images/*.tar /var/lib/k8s-bundle/images/ 2>/dev/null || true
VERSION=$(/var/lib/k8s-bundle/kubelet --version | awk '{print $2}')
SETS=(--set kubernetesVersion="$VERSION"
      --set kscript.kubernetes.source=bundle --set kscript.kubernetes.bundleDir=/var/lib/k8s-bundle
      --set nodeRegistration.name="$NODE_NAME"
      --set discovery.bootstrapToken.apiServerEndpoint="$CP_IP:6443"
      --set discovery.bootstrapToken.token=abcdef.0123456789abcdef
      --set "discovery.bootstrapToken.caCertHashes=[$(cat /payload/ca-cert-hash)]"
      --set timeouts.discovery=20m0s --set timeouts.tlsBootstrap=10m0s)
ARGS=(run worker.rhai "${SETS[@]}" --ignore-preflight-errors NumCPU,Mem)
ev "join-start"; s=$(date +%s.%N)
kscript "${ARGS[@]}" > "$OUT/join.log" 2>&1; rc=$?
ev "join-end rc=$rc"
echo "join: rc=$rc in $(el $s)s"; grep -E 'discovery|waiting|failed|ERROR|recap' "$OUT/join.log" | head -30
[ $rc = 0 ] || tail -40 "$OUT/join.log"
# Joined means registered: the kubelet, with the credentials its TLS bootstrap got, sees its own Node.
registered() {
  for _ in $(seq 1 300); do
    kubectl --kubeconfig /etc/kubernetes/kubelet.conf get node "$NODE_NAME" > "$OUT/node.txt" 2>&1 && return 0
    sleep 2
  done
  return 1
}
registered=no
[ $rc = 0 ] && registered && registered=yes
ev "node-registered=$registered"
echo "node $NODE_NAME registered: $registered"; cat "$OUT/node.txt" 2>/dev/null
[ $registered = yes ] || rc=1
ls -l /etc/kubernetes /var/lib/kubelet/pki > "$OUT/files.txt" 2>&1
[ $rc = 0 ] || { journalctl -u kubelet --no-pager > "$OUT/kubelet.journal" 2>&1; exit $rc; }
kscript status worker.rhai --timeout 20 "${SETS[@]}" > "$OUT/status.txt" 2>&1; echo "status after join: rc=$?"; cat "$OUT/status.txt"
grep -q 'stage 3 of 4' "$OUT/status.txt" || { echo "status does not say stage 3 of 4"; rc=1; }

# The control plane resets and inits again: once its API server stops answering, reset this node and
# join the new cluster (same CA, so the same pin; discovery waits for the new API server).
api_up() { timeout 3 bash -c "exec 3<>/dev/tcp/$CP_IP/6443" 2>/dev/null; }
down=0
for _ in $(seq 1 900); do
  if api_up; then down=0; else down=$((down + 1)); [ $down -ge 3 ] && break; fi
  sleep 2
done
ev "cp-api-down=$down"
ev "reset-start"; s=$(date +%s.%N)
kscript run reset.rhai --force "${SETS[@]}" > "$OUT/reset.log" 2>&1; rcR=$?
ev "reset-end rc=$rcR"
echo "reset: rc=$rcR in $(el $s)s"; tail -20 "$OUT/reset.log"
[ $rcR = 0 ] || rc=1
left=$(find /etc/kubernetes /var/lib/kubelet /etc/cni/net.d -mindepth 1 ! -type d 2>/dev/null | sort)
echo "left behind:"; echo "$left"
[ -z "$left" ] || { echo "reset left files behind"; rc=1; }
ev "rejoin-start"; s=$(date +%s.%N)
kscript "${ARGS[@]}" > "$OUT/rejoin.log" 2>&1; rcJ=$?
ev "rejoin-end rc=$rcJ"
echo "rejoin: rc=$rcJ in $(el $s)s"; grep -E 'discovery|failed|ERROR|recap' "$OUT/rejoin.log" | head -20
[ $rcJ = 0 ] || { tail -40 "$OUT/rejoin.log"; rc=1; }
registered=no
[ $rcJ = 0 ] && registered && registered=yes
ev "node-registered-again=$registered"
echo "node $NODE_NAME registered in the new cluster: $registered"; cat "$OUT/node.txt" 2>/dev/null
[ $registered = yes ] || rc=1
journalctl -u kubelet --no-pager > "$OUT/kubelet.journal" 2>&1
exit $rc
