#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the tests, the demo and the benchmark.
#
#   scripts/slurm-cluster.sh start    install slurmctld, slurmd, slurm-client and munge (apt) if
#                                     needed, write the configuration, start munged, slurmctld and
#                                     slurmd, wait until the node is idle
#   scripts/slurm-cluster.sh stop     stop the daemons that `start` launched (never other ones)
#   scripts/slurm-cluster.sh status   say whether the cluster answers (exit 0) or not (3)
#   scripts/slurm-cluster.sh env      print `export SLURM_CONF=...` for a shell to eval
#
# Safe to call twice (a lock serialises start/stop). Needs root (apt, daemons).
#
# Every Slurm command finds this cluster through SLURM_CONF (printed by `env`; the tests and the
# benchmark set it themselves when it is unset and the file exists). Nothing is written to
# /etc/slurm, so a machine's own Slurm configuration is left alone.
#
# Choices (see the README, "Slurm"):
#   * no accounting database (no slurmdbd, no MariaDB): `sacct` answers "accounting storage is
#     disabled"; `python -m pipeline slurm status` then reads squeue/scontrol, and finished jobs
#     stay in the controller's memory for MinJobAge (1 h here). The per-sample truth is the run's
#     ledgers (manifest.json + samples.jsonl) either way.
#   * ProctrackType=proctrack/linuxproc and TaskPlugin=task/none: no cgroups needed; a task's
#     processes are found by parentage (a server started in its own process group is still the
#     task's child, so Slurm's SIGTERM/SIGKILL at scancel and the time limit reach it).
#   * the node's CPUs are this machine's; CR_CPU: two 1-CPU tasks run side by side on 2 cores.
#   * KillWait=10: 10 s between Slurm's SIGTERM and its SIGKILL (scancel, time limit).
#
# Environment:
#   SLURM_CLUSTER_DIR   configuration, state, logs, pids (default /var/lib/fdb-slurm; machine-wide
#                       like the daemons themselves, so every checkout uses the one cluster)
#   SLURM_CLUSTER_TIMEOUT   seconds to wait for the node to be idle (default 60)
set -euo pipefail

dir="${SLURM_CLUSTER_DIR:-/var/lib/fdb-slurm}"
conf="${dir}/slurm.conf"
timeout_s="${SLURM_CLUSTER_TIMEOUT:-60}"
packages=(slurmctld slurmd slurm-client munge)

log() { printf '[slurm-cluster] %s\n' "$*"; }
die() { printf '[slurm-cluster] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

export SLURM_CONF="${conf}"

answers() { timeout 10 sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; }

alive() {  # alive NAME PIDFILE: the daemon of that pid file runs
    local pid
    [[ -s "$2" ]] || return 1
    pid="$(cat "$2")"
    [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null || return 1
    [[ "$(cat "/proc/${pid}/comm" 2>/dev/null)" == "$1" ]]
}

install_packages() {
    if dpkg -s "${packages[@]}" >/dev/null 2>&1; then
        return
    fi
    [[ "$(id -u)" == 0 ]] || die "Slurm is not installed and this is not root: apt-get install -y ${packages[*]}"
    log "installing ${packages[*]} with apt"
    local t0
    t0=$(now)
    apt-get update -qq
    # no init system here: the packages install without starting anything
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
    log "installed in $(since "${t0}") s ($(slurmctld -V))"
}

write_config() {
    local host cpus text
    host="$(hostname -s)"
    cpus="$(nproc)"
    mkdir -p "${dir}/state" "${dir}/spool" "${dir}/log"
    text="# written by scripts/slurm-cluster.sh: a one-node cluster for fdb-pipeline's tests
ClusterName=fdb
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=${dir}/state
SlurmdSpoolDir=${dir}/spool
SlurmctldPidFile=${dir}/slurmctld.pid
SlurmdPidFile=${dir}/slurmd.pid
SlurmctldLogFile=${dir}/log/slurmctld.log
SlurmdLogFile=${dir}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=3600
KillWait=10
InactiveLimit=0
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
    if [[ ! -f "${conf}" ]] || [[ "$(cat "${conf}")" != "${text}" ]]; then
        printf '%s\n' "${text}" >"${conf}"
        log "wrote ${conf}"
        changed=1
    fi
}

start_munge() {
    if timeout 5 munge -n </dev/null >/dev/null 2>&1; then
        return
    fi
    [[ -s /etc/munge/munge.key ]] || { mungekey --create >/dev/null 2>&1 || /usr/sbin/mungekey -c; }
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged 9>&-
    local i
    for (( i = 0; i < 50; i++ )); do
        timeout 5 munge -n </dev/null >/dev/null 2>&1 && return
        sleep 0.1
    done
    die "munged does not answer (log: /var/log/munge/munged.log)"
}

start() {
    install_packages
    changed=0
    write_config
    start_munge
    if (( changed )); then
        stop_daemons
    fi
    local t0
    t0=$(now)
    if ! alive slurmctld "${dir}/slurmctld.pid"; then
        # -i: ignore state from an earlier configuration that cannot be recovered
        slurmctld -i 9>&-
    fi
    if ! alive slurmd "${dir}/slurmd.pid"; then
        slurmd 9>&-
    fi
    local deadline
    deadline=$(( $(date +%s) + timeout_s ))
    until answers; do
        if (( $(date +%s) > deadline )); then
            tail -n 20 "${dir}/log/slurmctld.log" "${dir}/log/slurmd.log" >&2 || true
            die "the node is not idle after ${timeout_s} s (logs: ${dir}/log)"
        fi
        # a node left DOWN by an earlier start comes back
        scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true
        sleep 0.5
    done
    log "ready in $(since "${t0}") s: $(sinfo -h -o '%P %D node(s) %c CPUs %t') (SLURM_CONF=${conf})"
}

stop_daemons() {
    local name pid
    for name in slurmd slurmctld; do
        if alive "${name}" "${dir}/${name}.pid"; then
            pid="$(cat "${dir}/${name}.pid")"
            kill -TERM "${pid}"
            for (( i = 0; i < 100; i++ )); do
                kill -0 "${pid}" 2>/dev/null || break
                sleep 0.1
            done
            log "stopped ${name} (pid ${pid})"
        fi
    done
}

status() {
    if answers; then
        log "running: $(sinfo -h -o '%P %D node(s) %c CPUs %t') (SLURM_CONF=${conf})"
    else
        log "not running (SLURM_CONF=${conf})"
        return 3
    fi
}

cmd="${1:-}"
case "${cmd}" in
    start | stop | status) ;;
    env) printf 'export SLURM_CONF=%q\n' "${conf}"; exit 0 ;;
    *) die "usage: $0 start|stop|status|env" ;;
esac
if [[ "${cmd}" == status ]]; then
    command -v sinfo >/dev/null || { log "not installed"; exit 3; }
    status
    exit
fi
mkdir -p "${dir}"
exec 9>"${dir}/lock"
flock -w 300 9 || die "another slurm-cluster.sh holds ${dir}/lock for 300 s"
if [[ "${cmd}" == stop ]]; then
    stop_daemons
else
    start
fi
