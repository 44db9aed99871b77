#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# A one-node Slurm cluster for tests, run as root without systemd from
# Debian's slurm-wlm and munge packages (tests/setup.sh installs them):
#
#   slurm.sh start DIR   write DIR/slurm.conf and a munge key, start
#                        munged, slurmctld and slurmd (logs under DIR),
#                        wait until sinfo reports the node idle, print
#                        the environment the Slurm commands need
#   slurm.sh env DIR     print that environment again
#   slurm.sh stop DIR    cancel the cluster's jobs, stop the daemons
#
# Everything lives under DIR: nothing under /etc is read or written (the
# commands find DIR/slurm.conf through SLURM_CONF). The ports and the node
# name are derived from DIR, so clusters in different DIRs do not collide.
# Both start and stop are idempotent. Exit status 77: this machine cannot
# run Slurm (not root, or the packages are missing); the message says why.
set -Eeuo pipefail
# shellcheck source=tests/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { usage_exit "slurm.sh start|stop|env DIR"; }
[ $# -eq 2 ] || usage
cmd=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
export SLURM_CONF="$DIR/slurm.conf"

# 16 bits of a hash of DIR name the node and pick the ports.
hash=$(printf '%s' "$DIR" | cksum | cut -d' ' -f1)
NODE="tg$(printf '%04x' $((hash % 65536)))"
CTLD_PORT=$((20000 + (hash % 4000) * 2))
SLURMD_PORT=$((CTLD_PORT + 1))
MUNGE_SOCKET="$DIR/munge/munge.socket"

print_env() {
  echo "SLURM_CONF=$SLURM_CONF"
  echo "TG_SLURM_NODE=$NODE"
}

# Is process $1 running (a zombie is not)?
running() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]
}

# Is the daemon whose pid file is $1 running?
alive() {
  [ -s "$1" ] && running "$(cat "$1")"
}


not() { ! "$@"; }

node_idle() {
  [ "$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null)" = idle ]
}

no_jobs() {
  [ -z "$(squeue -h -o %i 2>/dev/null)" ]
}

stop_daemon() { # pid file, name
  local pidfile=$1 pid
  if alive "$pidfile"; then
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    if ! wait_for 10 not running "$pid"; then
      echo "slurm.sh: $2 did not stop within 10 s, killing it" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

write_config() {
  mkdir -p "$DIR/munge" "$DIR/state" "$DIR/spool" "$DIR/log"
  chmod 700 "$DIR/munge"
  if [ ! -s "$DIR/munge/munge.key" ]; then
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
  fi
  # CPUs Slurm may hand out: at least TG_SLURM_CPUS (default 8), more
  # than a small test machine has, so a test can run several one-core
  # jobs at once (config_overrides: Slurm believes the configuration).
  local cpus want=${TG_SLURM_CPUS:-8}
  cpus=$(nproc)
  [ "$cpus" -ge "$want" ] || cpus=$want
  # Memory jobs may ask for (--mem): this machine's, in MB.
  local mem_mb
  mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
  cat >"$SLURM_CONF" <<CONF
# Written by tests/cluster/slurm.sh: a one-node cluster under $DIR.
ClusterName=$NODE
SlurmctldHost=$(hostname)(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=2
NodeName=$NODE NodeHostname=$(hostname) NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
}

start() {
  if [ "$(id -u)" != 0 ]; then
    echo "slurm.sh: a test Slurm runs as root (uid is $(id -u))" >&2
    exit 77
  fi
  local p
  for p in munged slurmctld slurmd sbatch sinfo; do
    if ! command -v "$p" >/dev/null; then
      echo "slurm.sh: $p not found: install slurm-wlm and munge (tests/setup.sh)" >&2
      exit 77
    fi
  done
  if alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" && node_idle; then
    print_env # already running
    return
  fi
  trap 'echo "slurm.sh: start failed; logs under $DIR/log" >&2; stop' ERR
  trap 'echo "slurm.sh: interrupted; stopping" >&2; stop; exit 1' INT TERM
  write_config
  if ! alive "$DIR/munged.pid"; then
    munged --force --key-file="$DIR/munge/munge.key" --socket="$MUNGE_SOCKET" \
      --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" \
      --seed-file="$DIR/munge/munge.seed"
    wait_for 10 test -S "$MUNGE_SOCKET" ||
      { echo "slurm.sh: munged did not start (see $DIR/log/munged.log)" >&2; false; }
  fi
  if ! alive "$DIR/slurmctld.pid"; then
    # -i: ignore state a previous start may have left in DIR/state.
    setsid slurmctld -D -i -f "$SLURM_CONF" >>"$DIR/log/slurmctld.out" 2>&1 </dev/null &
    wait_for 15 alive "$DIR/slurmctld.pid" ||
      { echo "slurm.sh: slurmctld did not start (see $DIR/log/slurmctld.log)" >&2; false; }
  fi
  if ! alive "$DIR/slurmd.pid"; then
    setsid slurmd -D -N "$NODE" -f "$SLURM_CONF" >>"$DIR/log/slurmd.out" 2>&1 </dev/null &
  fi
  wait_for 30 node_idle ||
    { echo "slurm.sh: node $NODE not idle within 30 s (see $DIR/log)" >&2; false; }
  trap - ERR INT TERM
  print_env
}

stop() {
  if alive "$DIR/slurmctld.pid"; then
    scancel --full --quiet -u root 2>/dev/null || true
    wait_for 15 no_jobs || echo "slurm.sh: jobs still queued after scancel" >&2
  fi
  stop_daemon "$DIR/slurmd.pid" slurmd
  stop_daemon "$DIR/slurmctld.pid" slurmctld
  stop_daemon "$DIR/munged.pid" munged
  rm -rf "$DIR/state" "$DIR/spool"
}

case $cmd in
start) start ;;
stop) stop ;;
env) print_env ;;
*) usage ;;
esac
