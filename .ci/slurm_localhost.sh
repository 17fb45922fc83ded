#!/usr/bin/env bash
# One-node SLURM cluster on localhost (slurmctld + slurmd + munged), for the launcher tests (issue 17).
#
#   .ci/slurm_localhost.sh [start]   install slurm-wlm + munge when absent, write slurm.conf, start, wait for idle
#   .ci/slurm_localhost.sh stop      stop slurmctld, slurmd and munged started by this script
#   .ci/slurm_localhost.sh status    one sinfo line (exit 1 when the cluster is not up)
#
# Exit status: 0 up / done; 3 = cannot run here (not root, no apt-get, install failed, daemons did not come up),
# with one line "slurm_localhost: SKIP: <reason>" on stdout, so a test can skip with that reason.
# Idempotent: `start` on a running cluster with an unchanged slurm.conf only waits for idle.
# No cgroups (containers): proctrack/linuxproc, task/none. No slurmdbd: plain `sacct` says "Slurm accounting
# storage is disabled"; use `sacct -c` (--completion, reads the jobcomp/filetxt file $JOBCOMP), e.g.
# `sacct -c -P -n -o jobid,state,exitcode -j ID` (one row per run of the job: a requeued job shows
# FAILED/PENDING/COMPLETED rows), or `.ci/slurm_localhost.sh jobcomp [JOBID]` for the raw lines.
# The start-up probe (`srun ... -J slurm_localhost_probe true`) also leaves rows there.
# Requeue: JobRequeue=1; `scancel --signal=TERM --full ID` then `scontrol requeue ID` (or the job itself runs
# `scontrol requeue $SLURM_JOB_ID` from its TERM trap, as submitit does) restarts it with SLURM_RESTART_COUNT=1
# after cred_expire+1 s (AuthInfo=cred_expire=$SLURM_LOCALHOST_CRED_EXPIRE, default 5; SLURM's own default 120).
# Tested: Debian 12, slurm-wlm 22.05.8, as root in a container without systemd.
set -u

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
JOBCOMP=$LOG_DIR/jobcomp.txt
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
WAIT_S=${SLURM_LOCALHOST_WAIT_S:-30}
CRED_EXPIRE=${SLURM_LOCALHOST_CRED_EXPIRE:-5}

say() { echo "slurm_localhost: $*"; }
skip() { say "SKIP: $*"; exit 3; }

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_pkgs() {
  command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
    && command -v munged >/dev/null && return 0
  [ "$(id -u)" = 0 ] || skip "slurm-wlm/munge not installed and not root (cannot apt-get install)"
  command -v apt-get >/dev/null || skip "slurm-wlm/munge not installed and no apt-get on this machine"
  say "installing slurm-wlm munge with apt-get"
  local log=/tmp/slurm_localhost_apt.log
  if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge >"$log" 2>&1 \
         || { apt-get update -qq >>"$log" 2>&1 && \
              DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge >>"$log" 2>&1; }; }
  then
    skip "apt-get install slurm-wlm munge failed: $(tail -n 1 "$log")"
  fi
  command -v slurmctld >/dev/null || skip "slurm-wlm installed but slurmctld not on PATH"
}

write_conf() {
  local host cpus mem_mb margin
  host=$(hostname -s)
  cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # GNU nproc honours OMP_NUM_THREADS (tests set it to 1)
  mem_mb=$(( $(awk '/^MemTotal:/{print $2}' /proc/meminfo) / 1024 ))
  margin=$(( mem_mb / 10 )); [ "$margin" -lt 512 ] && margin=512
  mem_mb=$(( mem_mb - margin )); [ "$mem_mb" -lt 256 ] && mem_mb=256
  mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
  local tmp; tmp=$(mktemp)
  cat >"$tmp" <<CONF
# written by .ci/slurm_localhost.sh for $host ($cpus CPUs, ${mem_mb} MB)
ClusterName=localhost
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also delays a requeued job's restart (default 120 s): short so requeue tests finish quickly
AuthInfo=cred_expire=${CRED_EXPIRE}
CryptoType=crypto/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$JOBCOMP
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
JobRequeue=1
PreemptType=preempt/none
PreemptMode=OFF
ReturnToService=2
KillWait=5
MinJobAge=300
InactiveLimit=0
Waittime=0
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  if [ -f "$CONF" ] && cmp -s "$tmp" "$CONF"; then rm -f "$tmp"; return 1; fi
  mv "$tmp" "$CONF"; chmod 644 "$CONF"
  return 0
}

start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then mungekey --create --force >/dev/null 2>&1
    else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
  fi
  id munge >/dev/null 2>&1 || skip "no munge user (munge package incomplete)"
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
  chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key; chmod 755 /run/munge
  alive "$MUNGE_PID" && return 0
  runuser -u munge -- /usr/sbin/munged --force >/dev/null 2>&1 \
    || skip "munged did not start: $(tail -n 1 /var/log/munge/munged.log 2>/dev/null)"
  local i; for i in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return 0; sleep 0.1; done
  skip "munged does not answer"
}

stop_daemons() {
  local f p i
  for f in "$SLURMD_PID" "$CTLD_PID" "$MUNGE_PID"; do
    alive "$f" || continue
    p=$(cat "$f"); kill "$p" 2>/dev/null
    for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
    rm -f "$f"
  done
}

# "idle" only once slurmd has registered (a node restored from saved state reads "idle*" until then)
node_state() { sinfo -h -N -o %T 2>/dev/null | head -n 1; }

start() {
  install_pkgs
  [ "$(id -u)" = 0 ] || { [ "$(node_state)" = idle ] && { say "up (not root): $(node_state)"; return 0; }; skip "not root: cannot start slurmctld/slurmd"; }
  local t0=$SECONDS changed=0
  write_conf && changed=1
  start_munge
  if [ "$changed" = 1 ] && { alive "$CTLD_PID" || alive "$SLURMD_PID"; }; then
    say "slurm.conf changed: restarting slurmctld/slurmd"
    local keep=$MUNGE_PID; MUNGE_PID=/nonexistent; stop_daemons; MUNGE_PID=$keep
  fi
  local err=/tmp/slurm_localhost_daemon.err
  alive "$CTLD_PID" || slurmctld 2>"$err" || skip "slurmctld did not start: $(grep -m1 -E 'error|fatal' "$err" || tail -n 1 "$err")"
  alive "$SLURMD_PID" || slurmd 2>"$err" || skip "slurmd did not start: $(grep -m1 -E 'error|fatal' "$err" || tail -n 1 "$err")"
  local s=""
  while [ $((SECONDS - t0)) -le "$WAIT_S" ]; do
    s=$(node_state)
    case "$s" in
      # sinfo keeps saying "idle" for a while after slurmd died: a 1-task srun proves slurmd answers
      idle) if alive "$SLURMD_PID" && timeout 10 srun -N1 -n1 -t 1 --immediate=5 -J slurm_localhost_probe true >/dev/null 2>&1; then
              say "up in $((SECONDS - t0)) s: $(sinfo -h -o '%P %a %D %T %N %c CPUs %m MB')"; return 0; fi ;;
      mixed|allocated) alive "$SLURMD_PID" && { say "up in $((SECONDS - t0)) s (busy): $(sinfo -h -o '%P %a %D %T %N %c CPUs %m MB')"; return 0; } ;;
      drain*|down*) scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 ;;
    esac
    sleep 1
  done
  skip "node not idle after ${WAIT_S} s (state '${s:-none}'): $(tail -n 1 $LOG_DIR/slurmd.log 2>/dev/null)"
}

case "${1:-start}" in
  start) start ;;
  stop) stop_daemons; say "stopped" ;;
  status)
    if alive "$CTLD_PID" && sinfo -h >/dev/null 2>&1; then sinfo -h -o '%P %a %D %T %N %c CPUs %m MB'
    else say "not running"; exit 1; fi ;;
  jobcomp)
    [ -f "$JOBCOMP" ] || { say "no $JOBCOMP yet"; exit 1; }
    if [ -n "${2:-}" ]; then grep -E "(^| )JobId=$2 " "$JOBCOMP"; else cat "$JOBCOMP"; fi ;;
  *) echo "usage: $0 [start|stop|status|jobcomp [JOBID]]" >&2; exit 2 ;;
esac
