#!/bin/bash
# Real-node payload (runs inside the control-plane VM of ../shared/tools/vm/run-pair.sh; see tests/vm/README.md):
#   A. control-plane.rhai, killed (SIGKILL) once the static Pods serve (kube-apiserver listens on 6443);
#   B. the same command again: it must pass preflight and finish the node;
#   C. once more with --detailed-exitcode: nothing may change (exit 0), and it is timed.
# Events go to $OUT/events.txt (one clock with the worker's, in timeline.txt).
set -u
OUT=${OUT:-/payload/out}; mkdir -p "$OUT"
. /payload/pair.env
ev() { echo "$(date +%s.%N) cp $*" >> "$OUT/events.txt"; }
el() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }
install -m 0755 /payload/kscript /usr/local/bin/kscript
# The pair's cluster CA, made on the host, so the worker knows its pin in advance (kubeadm reuses a CA it finds).
install -d -m 0755 /etc/kubernetes/pki
install -m 0644 /payload/pki/ca.crt /etc/kubernetes/pki/ca.crt
install -m 0600 /payload/pki/ca.key /etc/kubernetes/pki/ca.key
# A stand-in CoreDNS image (the pause program under CoreDNS's name): the image bundle has none, and
# ImagePull checks every image init needs.
cp /payload/images/*.tar /var/lib/k8s-bundle/images/ 2>/dev/null || true
VERSION=$(/var/lib/k8s-bundle/kubelet --version | awk '{print $2}')
ARGS=(run control-plane.rhai --skip network
      --set kubernetesVersion="$VERSION"
      --set kscript.kubernetes.source=bundle --set kscript.kubernetes.bundleDir=/var/lib/k8s-bundle
      --set localAPIEndpoint.advertiseAddress="$NODE_IP" --set nodeRegistration.name="$NODE_NAME"
      --set 'bootstrapTokens=[{token: abcdef.0123456789abcdef}]'
      --set timeouts.controlPlaneComponentHealthCheck=15m0s
      --ignore-preflight-errors NumCPU,Mem)
fail=0

ev "run-A-start"; s=$(date +%s.%N)
kscript "${ARGS[@]}" > "$OUT/A.log" 2>&1 &
pid=$!
killed=no
for _ in $(seq 1 1800); do
  kill -0 $pid 2>/dev/null || break
  if ss -Hltn 'sport = :6443' | grep -q LISTEN; then
    kill -KILL $pid; killed=yes; break
  fi
  sleep 0.5
done
wait $pid; rcA=$?
ev "run-A-end killed=$killed"
echo "A: rc=$rcA killed=$killed after $(el $s)s; last lines:"; tail -5 "$OUT/A.log"
[ $killed = yes ] || { echo "A was not interrupted: 6443 never listened while it ran"; fail=1; }

ev "run-B-start"; s=$(date +%s.%N)
kscript "${ARGS[@]}" > "$OUT/B.log" 2>&1; rcB=$?
ev "run-B-end rc=$rcB"
echo "B: rc=$rcB in $(el $s)s"; grep -E 'preflight|failed|ERROR|recap|warning' "$OUT/B.log" | head -20
[ $rcB = 0 ] || { tail -40 "$OUT/B.log"; fail=1; }

ev "run-C-start"; s=$(date +%s.%N)
TIMEFORMAT='real %R s, user %U s, sys %S s (kscript and the commands it ran)'
{ time kscript "${ARGS[@]}" --detailed-exitcode > "$OUT/C.log" 2>&1; rcC=$?; } 2> "$OUT/C.time"
tC=$(el $s)
echo "C: $(cat "$OUT/C.time")"
ev "run-C-end rc=$rcC"
echo "C: rc=$rcC (0: nothing changed) in ${tC}s"; grep -E 'changed|failed|ERROR|recap|warning' "$OUT/C.log" | head -30
[ $rcC = 0 ] || { tail -40 "$OUT/C.log"; fail=1; }
echo "$tC" > "$OUT/C.seconds"

# Wait for the worker (its run writes nothing here; the Node object tells).
for _ in $(seq 1 450); do
  kubectl --kubeconfig /etc/kubernetes/admin.conf get node "$WORKER_NAME" > /dev/null 2>&1 && break
  sleep 2
done
ev "worker-node-seen"
kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes,pods -A -o wide > "$OUT/cluster.txt" 2>&1; cat "$OUT/cluster.txt"
kubectl --kubeconfig /etc/kubernetes/admin.conf get node "$WORKER_NAME" > /dev/null 2>&1 || { echo "the worker never registered"; fail=1; }
journalctl -u kubelet --no-pager > "$OUT/kubelet.journal" 2>&1
exit $fail
