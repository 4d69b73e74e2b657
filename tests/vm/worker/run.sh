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
ARGS=(run worker.rhai
      --set kubernetesVersion="$VERSION"
      --set kscript.kubernetes.source=bundle --set kscript.kubernetes.bundleDir=/var/lib/k8s-bundle
      --set nodeRegistration.name="$NODE_NAME"
      --set discovery.bootstrapToken.apiServerEndpoint="$CP_IP:6443"
      --set discovery.bootstrapToken.token=abcdef.0123456789abcdef
      --set "discovery.bootstrapToken.caCertHashes=[$(cat /payload/ca-cert-hash)]"
      --set timeouts.discovery=20m0s --set timeouts.tlsBootstrap=10m0s
      --ignore-preflight-errors NumCPU,Mem)
ev "join-start"; s=$(date +%s.%N)
kscript "${ARGS[@]}" > "$OUT/join.log" 2>&1; rc=$?
ev "join-end rc=$rc"
echo "join: rc=$rc in $(el $s)s"; grep -E 'discovery|waiting|failed|ERROR|recap' "$OUT/join.log" | head -30
[ $rc = 0 ] || tail -40 "$OUT/join.log"
# Joined means registered: the kubelet, with the credentials its TLS bootstrap got, sees its own Node.
registered=no
if [ $rc = 0 ]; then
  for _ in $(seq 1 300); do
    if kubectl --kubeconfig /etc/kubernetes/kubelet.conf get node "$NODE_NAME" > "$OUT/node.txt" 2>&1; then
      registered=yes; break
    fi
    sleep 2
  done
fi
ev "node-registered=$registered"
echo "node $NODE_NAME registered: $registered"; cat "$OUT/node.txt" 2>/dev/null
[ $registered = yes ] || rc=1
ls -l /etc/kubernetes /var/lib/kubelet/pki > "$OUT/files.txt" 2>&1
journalctl -u kubelet --no-pager > "$OUT/kubelet.journal" 2>&1
exit $rc
