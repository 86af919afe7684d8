#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for running the workflow through the SLURM
# profile without a real cluster (the test suite does; so can a user trying the profile).
#
#   workflows/slurm/local_cluster.sh install   # apt-get install slurm-wlm and munge (root, Debian/Ubuntu)
#   workflows/slurm/local_cluster.sh start     # install if needed, then munged, slurmctld, slurmd
#   workflows/slurm/local_cluster.sh status    # exit 0 when the cluster answers, else 1
#   workflows/slurm/local_cluster.sh stop      # stop the three daemons, keep logs and jobcomp.log
#
# Everything lives in one state folder ($GENOSEQ_SLURM_DIR, default /tmp/genoseq-slurm): its
# slurm.conf, munge key and socket, logs and spool. Clients (sbatch, squeue, srun) find
# slurm.conf through a link /etc/slurm/slurm.conf, made at start and removed at stop: SLURM_CONF
# alone is not enough, as the executor plugin's job step drops SLURM_* variables before it calls
# srun. So a machine with a slurm.conf of its own (a cluster node) is refused, and left alone.
# /etc/munge is not used: munged runs with its own key and socket.
#
# The node is "localhost" with this machine's CPUs (nproc) and memory; two partitions, cpu (the
# default) and gpu, both on it, named as in workflows/profiles/slurm (the gpu partition has no
# GPUs: jobs that ask for --gpus stay pending). Nothing needs cgroups or systemd, so it runs in a
# container: proctrack/linuxproc, task/none, no accounting database (accounting_storage/none);
# finished jobs stay visible to squeue and scontrol for MinJobAge (1 h) and each one's record is
# appended to jobcomp.log (jobcomp/filetxt). Root is needed (slurmd starts jobs as their user).
# Exit status: 0 done, 1 failed, 3 cannot run here (not root, or no SLURM and no apt-get).
set -euo pipefail

STATE=${GENOSEQ_SLURM_DIR:-/tmp/genoseq-slurm}
CONF=$STATE/slurm.conf
ETC_CONF=/etc/slurm/slurm.conf
SOCKET=$STATE/munge/munge.socket
SBIN=/usr/sbin
UNAVAILABLE=3

die() { echo "local_cluster: $*" >&2; exit 1; }
unavailable() { echo "local_cluster: $*" >&2; exit $UNAVAILABLE; }

installed() { [[ -x $SBIN/slurmctld && -x $SBIN/slurmd && -x $SBIN/munged && -x /usr/bin/sbatch ]]; }

install() {
    installed && return 0
    [[ $(id -u) == 0 ]] || unavailable "slurm-wlm is not installed and installing it needs root"
    command -v apt-get >/dev/null || unavailable "slurm-wlm is not installed and there is no apt-get"
    echo "local_cluster: installing slurm-wlm and munge" >&2
    apt-get update -qq || unavailable "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null \
        || unavailable "apt-get install slurm-wlm munge failed"
}

write_conf() {
    local cpus mem_mb
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc alone obeys OMP_NUM_THREADS
    mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 - 512 ))  # leave the daemons some
    mkdir -p "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/log"
    cat > "$CONF" <<CONF
# Written by workflows/slurm/local_cluster.sh: a single-node cluster for trying the workflow.
ClusterName=genoseq-local
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
MinJobAge=3600
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
CONF
}

start_munge() {
    mkdir -p "$STATE/munge"
    chmod 700 "$STATE/munge"
    [[ -f $STATE/munge/munge.key ]] || mungekey --create --keyfile="$STATE/munge/munge.key"
    if [[ -S $SOCKET ]] && munge -n --socket="$SOCKET" >/dev/null 2>&1; then
        return 0
    fi
    $SBIN/munged --force --socket="$SOCKET" --key-file="$STATE/munge/munge.key" \
        --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
        --seed-file="$STATE/munge/munged.seed"
}

ours() { [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; }

link_conf() {
    ours && return 0
    [[ -e $ETC_CONF || -L $ETC_CONF ]] && unavailable "$ETC_CONF exists: this machine has a SLURM configuration of its own"
    mkdir -p "$(dirname "$ETC_CONF")"
    ln -s "$CONF" "$ETC_CONF"
}

# running PIDFILE NAME: its process is daemon NAME and not a zombie (a stale pid file's number
# may be another process's by now; a stopped daemon stays a zombie until init reaps it)
running() {
    local pid stat
    pid=$(cat "$1" 2>/dev/null) || return 1  # a daemon removes its pid file as it ends
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ $stat == "$pid ($2) "[^Z]* ]]
}

# both daemons run and the node is up (slurmctld notices a dead slurmd only minutes later)
answers() {
    running "$STATE/slurmctld.pid" slurmctld && running "$STATE/slurmd.pid" slurmd \
        && timeout 10 sinfo -h -n localhost -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc|comp)$'
}

start() {
    [[ $(id -u) == 0 ]] || unavailable "starting slurmd needs root"
    install
    if ours && answers; then
        echo "local_cluster: already running ($CONF)" >&2
        return 0
    fi
    stop_daemons  # what an earlier start left behind, e.g. a slurmctld without its slurmd
    link_conf
    write_conf
    start_munge
    $SBIN/slurmctld -c  # -c: a fresh cluster, no jobs recovered from an earlier run
    $SBIN/slurmd -N localhost
    for _ in $(seq 60); do
        if answers; then
            echo "local_cluster: running ($CONF)" >&2
            return 0
        fi
        sleep 0.5
    done
    tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
    die "the node did not come up within 30 s (logs in $STATE/log)"
}

stop_pid() {  # stop_pid PIDFILE NAME: SIGTERM, wait up to 10 s
    if running "$1" "$2"; then
        local pid
        pid=$(cat "$1")
        kill "$pid"
        for _ in $(seq 100); do running "$1" "$2" || break; sleep 0.1; done
        running "$1" "$2" && die "$2 (pid $pid) did not stop"
    fi
    rm -f "$1"
}

stop_daemons() {
    stop_pid "$STATE/slurmd.pid" slurmd
    stop_pid "$STATE/slurmctld.pid" slurmctld
    stop_pid "$STATE/munge/munged.pid" munged
}

stop() {
    stop_daemons
    if ours; then rm "$ETC_CONF"; fi
    echo "local_cluster: stopped" >&2
}

case ${1:-} in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) ours && answers ;;
    *) echo "usage: $0 install|start|status|stop" >&2; exit 2 ;;
esac
