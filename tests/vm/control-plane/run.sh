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
SETS=(--set kubernetesVersion="$VERSION"
      --set kscript.kubernetes.source=bundle --set kscript.kubernetes.bundleDir=/var/lib/k8s-bundle
      --set localAPIEndpoint.advertiseAddress="$NODE_IP" --set nodeRegistration.name="$NODE_NAME"
      --set 'bootstrapTokens=[{token: abcdef.0123456789abcdef}]'
      --set timeouts.controlPlaneComponentHealthCheck=15m0s)
ARGS=(run control-plane.rhai --skip network "${SETS[@]}" --ignore-preflight-errors NumCPU,Mem)
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

# D. Where the node stands: init done, the pod network skipped (stage 3 of 4; exit 1: not the script's end).
# (--timeout 20: under TCG the API server may take longer than the default 5 s to answer a list.)
# The worker has just joined: its kube-proxy Pod (the DaemonSet counts every node's) may not be ready yet,
# so ask until status says stage 3, for up to 5 minutes; each answer is kept.
ev "status-D-start"; s=$(date +%s.%N)
for i in $(seq 1 30); do
  t=$(date +%s.%N)
  kscript status control-plane.rhai --timeout 20 "${SETS[@]}" > "$OUT/D.status" 2>&1; rcD=$?
  echo "D: try $i: rc=$rcD in $(el $t)s: $(grep -o 'stage [0-9] of [0-9] complete' "$OUT/D.status")"
  cp "$OUT/D.status" "$OUT/D.status.$i"
  grep -q 'stage 3 of 4' "$OUT/D.status" && break
  sleep 10
done
kscript status control-plane.rhai --timeout 20 "${SETS[@]}" --output json > "$OUT/D.json" 2>"$OUT/D.json.err"
ev "status-D-end rc=$rcD"
echo "D (status after init): rc=$rcD after $(el $s)s"; cat "$OUT/D.status"
grep -q 'stage 3 of 4' "$OUT/D.status" || { echo "D: status does not say stage 3 of 4"; fail=1; }

# E. Back to bare: reset keeps the CA it found (put there before A), removes what kscript and its components wrote.
ev "reset-E-start"; s=$(date +%s.%N)
kscript run reset.rhai --force "${SETS[@]}" > "$OUT/E.log" 2>&1; rcE=$?
ev "reset-E-end rc=$rcE"
echo "E (reset): rc=$rcE in $(el $s)s"; tail -25 "$OUT/E.log"
[ $rcE = 0 ] || fail=1
left=$(find /etc/kubernetes /var/lib/etcd /var/lib/kubelet /etc/cni/net.d -mindepth 1 ! -type d 2>/dev/null | sort)
echo "E: left behind:"; echo "$left"
[ "$(grep -v -x -e /etc/kubernetes/pki/ca.crt -e /etc/kubernetes/pki/ca.key <<< "$left" | grep -c .)" = 0 ] \
  || { echo "E: reset left more than the CA it found"; fail=1; }
cmp -s /payload/pki/ca.crt /etc/kubernetes/pki/ca.crt || { echo "E: the CA found before init is not kept"; fail=1; }
pods=$(ctr -n k8s.io containers ls -q 2>/dev/null | grep -c .)
echo "E: containers left in k8s.io: $pods; kubelet $(systemctl is-active kubelet)"
[ "$pods" = 0 ] || fail=1
kscript status control-plane.rhai --timeout 20 "${SETS[@]}" > "$OUT/E.status" 2>&1; echo "E: status after reset: rc=$?"; cat "$OUT/E.status"
grep -q 'stage 2 of 4' "$OUT/E.status" || { echo "E: status does not say stage 2 of 4 after reset"; fail=1; }

# F. Init again from scratch, no manual step; the worker resets and joins the new cluster by itself.
ev "run-F-start"; s=$(date +%s.%N)
kscript "${ARGS[@]}" > "$OUT/F.log" 2>&1; rcF=$?
ev "run-F-end rc=$rcF"
echo "F (init after reset): rc=$rcF in $(el $s)s"; grep -E 'preflight|failed|ERROR|recap|warning' "$OUT/F.log" | head -20
[ $rcF = 0 ] || { tail -40 "$OUT/F.log"; fail=1; }
rejoined=no
for _ in $(seq 1 600); do
  kubectl --kubeconfig /etc/kubernetes/admin.conf get node "$WORKER_NAME" > /dev/null 2>&1 && { rejoined=yes; break; }
  sleep 2
done
ev "worker-node-seen-again=$rejoined"
echo "F: worker registered in the new cluster: $rejoined"
[ $rejoined = yes ] || fail=1
kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes,pods -A -o wide > "$OUT/cluster-F.txt" 2>&1; cat "$OUT/cluster-F.txt"
journalctl -u kubelet --no-pager > "$OUT/kubelet.journal" 2>&1
exit $fail
