#!/usr/bin/env bash
# A one-node SLURM cluster on 127.0.0.1 for tests: munged, slurmctld and slurmd as plain daemons (no systemd,
# no accounting, no cgroups), everything under one state directory, every daemon stopped by its PID.
#   cluster.sh start DIR   write DIR/slurm.conf, start the daemons, wait until the node is idle
#   cluster.sh stop DIR    stop the daemons this script started in DIR
# Clients use it with SLURM_CONF=DIR/slurm.conf. Needs Debian's slurm-wlm and munge (installed by .ci/run).
# The SLURM executor's job step drops SLURM_CONF before its nested srun, which then reads the compiled-in
# /etc/slurm/slurm.conf: the script installs its configuration there while the cluster runs, and refuses to
# start where that file exists and is not its own.
set -euo pipefail

command=${1:?usage: cluster.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: cluster.sh start|stop DIR}")

system_conf=/etc/slurm/slurm.conf
marker="# written by dsflexinet tests/slurm/cluster.sh"

stop() {
  for daemon in slurmd slurmctld munged; do
    pidfile="$dir/$daemon.pid"
    if [[ -s $pidfile ]]; then
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
  if [[ -f $system_conf ]] && [[ $(head -n1 "$system_conf") == "$marker" ]]; then rm -f "$system_conf"; fi
}

start() {
  mkdir -p "$dir/state" "$dir/spool" "$dir/log"
  cpus=$(nproc)
  memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
  dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
  chmod 600 "$dir/munge.key"
  cat > "$dir/gres.conf" <<GRES
NodeName=localhost Name=gpu File=/dev/null Count=1
GRES
  cat > "$dir/slurm.conf" <<CONF
ClusterName=dsflexinet-test
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$((6817 + RANDOM % 1000))
SlurmdPort=$((7817 + RANDOM % 1000))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
GresTypes=gpu
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  if [[ -e $system_conf ]] && [[ $(head -n1 "$system_conf") != "$marker" ]]; then
    echo "$system_conf belongs to another SLURM installation; not starting a test cluster" >&2
    return 1
  fi
  mkdir -p "$(dirname "$system_conf")"
  { echo "$marker"; cat "$dir/slurm.conf"; } > "$system_conf"
  export SLURM_CONF="$dir/slurm.conf"
  munged --force --key-file="$dir/munge.key" --socket="$dir/munge.socket" --pid-file="$dir/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/munge.seed"
  slurmctld -f "$dir/slurm.conf"
  slurmd -f "$dir/slurm.conf" -N localhost
  for _ in $(seq 100); do
    if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
      echo "SLURM_CONF=$dir/slurm.conf"
      return 0
    fi
    sleep 0.2
  done
  echo "cluster did not become idle; logs in $dir/log" >&2
  stop
  return 1
}

case $command in
  start) start ;;
  stop) stop ;;
  *) echo "usage: cluster.sh start|stop DIR" >&2; exit 2 ;;
esac
