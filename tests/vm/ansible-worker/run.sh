#!/bin/bash
# Real-node payload (the worker VM of ../shared/tools/vm/run-pair.sh, `tests/vm/run.sh --ansible`): a bare
# node that Ansible, run from the control-plane VM, builds over SSH. It only lets the controller in
# (root's authorized key), puts this node's stand-in images in the bundle, and stays up until the
# controller says it is done (the flag file it writes over SSH), or the time runs out.
set -u
OUT=${OUT:-/payload/out}; mkdir -p "$OUT"
. /payload/pair.env
ev() { echo "$(date +%s.%N) worker $*" >> "$OUT/events.txt"; }
install -d -m 0700 /root/.ssh
install -m 0600 /payload/ssh/id_ed25519.pub /root/.ssh/authorized_keys
systemctl start ssh
# The stand-in images of tests/vm/run.sh (CoreDNS's name on the pause program): the bundle has none.
cp /payload/images/*.tar /var/lib/k8s-bundle/images/ 2>/dev/null || true
ev "ssh-ready"
done_flag=/run/kscript-ansible-done
for _ in $(seq 1 1500); do
  [ -e $done_flag ] && break
  sleep 2
done
ev "controller-done=$([ -e $done_flag ] && echo yes || echo no)"
journalctl -u kubelet --no-pager > "$OUT/kubelet.journal" 2>&1
ls -l /etc/kubernetes /var/lib/kubelet/pki > "$OUT/files.txt" 2>&1
[ -e $done_flag ] || { echo "the controller never said it was done"; exit 1; }
exit "$(cat $done_flag)"
