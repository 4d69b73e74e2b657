#!/usr/bin/env bash
# Ansible's overhead per host per kscript run: a dry run of stages 1-2 (containerd, kubelet) of
# control-plane.rhai rendered into a folder per host, RUNS times by kscript alone, then as RUNS
# kscript_run tasks of one playbook on N local hosts (ansible_connection=local), minus the same
# playbook with one task (Ansible's start-up). CPU time (user+sys of every process, which a busy
# machine does not inflate as it does wall time) and wall time. Prints figures; asserts nothing.
#   ansible/tests/perf/overhead.sh KSCRIPT [N...]        (default N: 1 2 4)
set -euo pipefail
kscript=$(realpath "$1"); shift
counts=("${@:-1 2 4}"); [ $# -gt 0 ] || counts=(1 2 4)
runs=10
here=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/collections/ansible_collections/kscript"
ln -s "$here" "$work/collections/ansible_collections/kscript/kscript"
export ANSIBLE_COLLECTIONS_PATH=$work/collections ANSIBLE_HOME=$work/ansible-home
task="    - kscript.kscript.kscript_run: {binary: $kscript, script: control-plane.rhai, root: \"$work/{{ inventory_hostname }}\", only: [containerd, kubelet]}"
{ printf -- '- hosts: all\n  gather_facts: false\n  tasks:\n'; echo "$task"; } > "$work/one.yml"
{ printf -- '- hosts: all\n  gather_facts: false\n  tasks:\n'; for _ in $(seq $runs); do echo "$task"; done; } > "$work/many.yml"
# "WALL_MS CPU_MS" of a command (CPU: its own and its descendants', as they are reaped).
secs() {
  python3 -c 'import resource, subprocess, sys, time
s = time.monotonic(); subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(int((time.monotonic() - s) * 1000), int((r.ru_utime + r.ru_stime) * 1000))' "$@"
}
read -r alone_wall alone_cpu < <(secs bash -c "for i in \$(seq $runs); do '$kscript' run control-plane.rhai --root '$work/alone' --only containerd --only kubelet --dry-run --output json > /dev/null; done")
echo "kscript alone: $((alone_wall / runs)) ms wall, $((alone_cpu / runs)) ms CPU a run"
for n in "${counts[@]}"; do
  { echo "[nodes]"; for i in $(seq "$n"); do echo "n$i ansible_connection=local ansible_python_interpreter=$(command -v python3)"; done; } > "$work/inv"
  read -r one_wall one_cpu < <(secs ansible-playbook -i "$work/inv" "$work/one.yml" --check)
  read -r many_wall many_cpu < <(secs ansible-playbook -i "$work/inv" "$work/many.yml" --check)
  task_wall=$(( (many_wall - one_wall) / (runs - 1) ))
  host_cpu=$(( (many_cpu - one_cpu) / (runs - 1) / n ))
  echo "N=$n: a task on all $n hosts $task_wall ms wall; per host per run $host_cpu ms CPU, of which Ansible $((host_cpu - alone_cpu / runs)) ms (start-up: $one_wall ms wall)"
done
