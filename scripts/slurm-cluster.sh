#!/usr/bin/env bash
# A single-node Slurm cluster on 127.0.0.1 for the tests: munged, slurmctld and slurmd from Debian's
# packages, with their own key, ports, socket, state and spool under STATE_DIR. Nothing system-wide
# is configured or started; `stop` ends exactly the daemons `start` began, by their PIDs.
#
#   scripts/slurm-cluster.sh start STATE_DIR   -> prints SLURM_CONF=...; exit 3 when it cannot run here
#   scripts/slurm-cluster.sh stop STATE_DIR
#
# Needs root (SlurmUser=root, munged's key) and apt-get for the packages when they are missing.
set -uo pipefail

cmd="${1:-}"
dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop STATE_DIR" >&2; exit 2; }
skip() { echo "cannot run a Slurm cluster here: $*" >&2; exit 3; }
fail() { echo "slurm-cluster: $*" >&2; exit 1; }

stop_all() {
  for name in slurmd slurmctld munged; do
    f="$dir/$name.pid"
    [ -f "$f" ] || continue
    pid="$(cat "$f" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

if [ "$cmd" = stop ]; then
  stop_all
  exit 0
fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop STATE_DIR" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || skip "not root (slurmd and munged run as root here)"
need=()
command -v munged >/dev/null 2>&1 || need+=(munge)
command -v slurmctld >/dev/null 2>&1 || need+=(slurmctld)
command -v slurmd >/dev/null 2>&1 || need+=(slurmd)
command -v sbatch >/dev/null 2>&1 || need+=(slurm-client)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || skip "no apt-get to install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Another apt (unattended upgrades, a second job) may hold the dpkg lock: wait for it rather than fail.
  if ! timeout 900 apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >"$dir.apt.log" 2>&1; then
    timeout 600 apt-get -o DPkg::Lock::Timeout=300 update -qq >>"$dir.apt.log" 2>&1 || skip "apt-get update failed (see $dir.apt.log)"
    timeout 900 apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >>"$dir.apt.log" 2>&1 || skip "apt-get install ${need[*]} failed (see $dir.apt.log)"
  fi
fi

mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
chmod 700 "$dir/munge"
stop_all

# Ports of its own: the first free pair from a per-folder offset.
free_port() {
  local p="$1"
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done
  echo "$p"
}
base=$((17000 + $(printf '%s' "$dir" | cksum | cut -d' ' -f1) % 2000 * 2))
ctld_port="$(free_port "$base")"
slurmd_port="$(free_port $((ctld_port + 1)))"
host="$(hostname -s 2>/dev/null || hostname)"
cpus="$(nproc)"

dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munge/munge.seed" \
  || fail "munged did not start (see $dir/munged.log)"

conf="$dir/slurm.conf"
cat >"$conf" <<EOF
ClusterName=gatescope-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
MinJobAge=600
SlurmdTimeout=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=gatescope Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$conf"
slurmctld -f "$conf" -i || fail "slurmctld did not start (see $dir/slurmctld.log)"
slurmd -f "$conf" -N "$host" || fail "slurmd did not start (see $dir/slurmd.log)"
for _ in $(seq 1 100); do
  state="$(sinfo -h -N -o '%t' 2>/dev/null | head -n1)"
  case "$state" in idle*|mix*|alloc*) echo "SLURM_CONF=$conf"; exit 0 ;; esac
  sleep 0.2
done
fail "the node did not come up (state '${state:-none}'; see $dir/slurmctld.log and $dir/slurmd.log)"
