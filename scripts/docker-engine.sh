#!/usr/bin/env bash
# Install and run a local Docker engine for the tests (and CI) on a bare Debian machine.
#
#   scripts/docker-engine.sh start     install docker.io if needed, start dockerd if no engine
#                                      answers, wait until `docker info` works
#   scripts/docker-engine.sh stop      stop the dockerd that `start` launched (never another one)
#   scripts/docker-engine.sh status    say whether an engine answers, which one, and its network
#
# Safe to call twice (and concurrently: a lock serialises start/stop). Needs root (apt, dockerd).
#
# Networking - what works on the development/CI machines (checked by hand):
#   * Default (DOCKER_ENGINE_BRIDGE unset): dockerd gets its default bridge `docker0`
#     (172.17.0.1/16) but `--iptables=false --ip6tables=false`, so no firewall/NAT rule is
#     touched. Published ports then work through docker's userland proxy:
#         docker run -p 127.0.0.1::8998 IMAGE ...      (or -p 127.0.0.1:HOSTPORT:8998)
#     and a test reaches the server at 127.0.0.1:<host port> (`docker port C 8998/tcp`, or
#     docker-py's `container.ports`). Containers have a default route (so PersonaPlex's
#     get_lan_ip() works) but no way out (no NAT). The server inside MUST listen on the
#     container's interface, not on 127.0.0.1: the proxy connects to the container's IP
#     (172.17.0.x). The image (containers/Dockerfile) does this by default (SERVER_HOST=auto).
#   * DOCKER_ENGINE_BRIDGE=none adds `--bridge=none`: no docker0 is created, containers get only
#     a loopback interface, and `-p` is accepted but silently publishes nothing (connection
#     refused on the host). Then use `--network host`: the container shares the host's network,
#     the server's `--port` is the host port (pick a free one) and it is reached at
#     127.0.0.1:PORT; pass SERVER_HOST=127.0.0.1 to keep upstream moshi off other interfaces.
#   `status` prints which of the two an answering engine offers (a `bridge` network or not), and
#   tests/docker_support.py picks accordingly.
#
# Storage: dockerd chooses its driver (overlay2 on these machines' ext4; it falls back to vfs
# where overlay is impossible). vfs works too (DOCKER_ENGINE_STORAGE_DRIVER=vfs) but copies the
# whole root filesystem for every layer and container: the server image build is several times
# slower and uses several GB. Note that dockerd sticks to the driver whose data it finds in
# /var/lib/docker.
#
# Environment:
#   DOCKER_ENGINE_STATE_DIR   log, pid file and lock (default /tmp/fdb-docker-engine; machine-wide
#                             like the daemon itself, so `stop` works from any checkout)
#   DOCKER_ENGINE_TIMEOUT     seconds to wait for `docker info` (default 90)
#   DOCKER_ENGINE_BRIDGE      `none` for --bridge=none (see above); default: docker0 bridge
#   DOCKER_ENGINE_STORAGE_DRIVER   force a storage driver (e.g. vfs)
#   DOCKER_ENGINE_EXTRA_ARGS  more dockerd arguments (word-split)
set -euo pipefail

state_dir="${DOCKER_ENGINE_STATE_DIR:-/tmp/fdb-docker-engine}"
timeout_s="${DOCKER_ENGINE_TIMEOUT:-90}"
log_file="${state_dir}/dockerd.log"
pid_file="${state_dir}/dockerd.pid"
lock_file="${state_dir}/lock"

log() { printf '[docker-engine] %s\n' "$*"; }
die() { printf '[docker-engine] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

engine_answers() { timeout 20 docker info >/dev/null 2>&1; }

our_pid() {
    # The pid of the dockerd that this script started, if it is still alive.
    local pid
    [[ -s "${pid_file}" ]] || return 1
    pid="$(cat "${pid_file}")"
    [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null || return 1
    # Guard against pid reuse: it must still be a dockerd.
    [[ "$(cat "/proc/${pid}/comm" 2>/dev/null)" == dockerd ]] || return 1
    printf '%s\n' "${pid}"
}

network_mode() {
    if docker network inspect bridge >/dev/null 2>&1; then
        echo "bridge (publish with -p 127.0.0.1::8998; server must listen on the container's interface)"
    else
        echo "no bridge (-p publishes nothing: use --network host)"
    fi
}

install_engine() {
    if command -v dockerd >/dev/null && command -v docker >/dev/null; then
        return
    fi
    [[ "$(id -u)" == 0 ]] || die "docker.io is not installed and this is not root: apt-get install -y docker.io"
    log "installing docker.io with apt"
    local t0
    t0=$(now)
    apt-get update -qq
    # policy-rc.d (or no init system) keeps the package from starting a daemon itself.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    command -v dockerd >/dev/null || die "docker.io installed but dockerd is not on PATH"
    log "docker.io installed in $(since "${t0}") s ($(dockerd --version))"
}

start() {
    if engine_answers; then
        log "an engine already answers ($(docker version -f '{{.Server.Version}}' 2>/dev/null)); network: $(network_mode)"
        return
    fi
    if [[ -n "${DOCKER_HOST:-}" ]]; then
        die "DOCKER_HOST=${DOCKER_HOST} does not answer; unset it to use a local dockerd"
    fi
    install_engine
    if pid="$(our_pid)"; then
        log "dockerd (pid ${pid}) is starting already; waiting for it"
    else
        [[ "$(id -u)" == 0 ]] || die "dockerd must be started as root"
        local args=(--iptables=false --ip6tables=false --pidfile "${pid_file}")
        if [[ "${DOCKER_ENGINE_BRIDGE:-}" == none ]]; then
            args+=(--bridge=none)
        fi
        if [[ -n "${DOCKER_ENGINE_STORAGE_DRIVER:-}" ]]; then
            args+=("--storage-driver=${DOCKER_ENGINE_STORAGE_DRIVER}")
        fi
        # shellcheck disable=SC2206  # deliberate word splitting
        args+=(${DOCKER_ENGINE_EXTRA_ARGS:-})
        rm -f "${pid_file}"
        log "starting dockerd ${args[*]} (log: ${log_file})"
        # A new session, detached from this shell's terminal and process group, so that the
        # daemon outlives the caller (a test session, a make target).
        # fd 9 (the lock) is closed for it, or the daemon would hold the lock for its lifetime.
        setsid nohup "$(command -v dockerd)" "${args[@]}" </dev/null >>"${log_file}" 2>&1 9>&- &
        launched=$!
    fi
    local t0 deadline
    t0=$(now)
    deadline=$(( $(date +%s) + timeout_s ))
    until engine_answers; do
        if [[ -n "${launched:-}" ]] && ! kill -0 "${launched}" 2>/dev/null; then
            tail -n 30 "${log_file}" >&2
            die "dockerd exited during start-up (log: ${log_file})"
        fi
        if (( $(date +%s) > deadline )); then
            tail -n 30 "${log_file}" >&2
            die "no answer from dockerd after ${timeout_s} s (log: ${log_file})"
        fi
        sleep 0.3
    done
    log "engine ready in $(since "${t0}") s: dockerd $(docker version -f '{{.Server.Version}}'), pid $(cat "${pid_file}" 2>/dev/null || echo '?'), storage $(docker info -f '{{.Driver}}'); network: $(network_mode)"
}

stop() {
    local pid
    if ! pid="$(our_pid)"; then
        rm -f "${pid_file}"
        if engine_answers; then
            log "the answering engine was not started by this script; leaving it alone"
        else
            log "not running"
        fi
        return
    fi
    log "stopping dockerd (pid ${pid})"
    kill -TERM "${pid}"
    # dockerd stops its containers (10 s grace each, in parallel) and its containerd first.
    local i
    for (( i = 0; i < 300; i++ )); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "${pid}" 2>/dev/null; then
        log "dockerd still alive after 30 s; killing it"
        kill -KILL "${pid}" 2>/dev/null || true
        # Its managed containerd would outlive it.
        local cpid
        cpid="$(cat /var/run/docker/containerd/containerd.pid 2>/dev/null || true)"
        if [[ "${cpid}" =~ ^[0-9]+$ ]] && [[ "$(cat "/proc/${cpid}/comm" 2>/dev/null)" == containerd ]]; then
            kill -KILL "${cpid}" 2>/dev/null || true
        fi
    fi
    rm -f "${pid_file}"
    log "stopped"
}

status() {
    if engine_answers; then
        local who="not started by this script"
        if pid="$(our_pid)"; then who="pid ${pid}, started by this script"; fi
        log "running: dockerd $(docker version -f '{{.Server.Version}}') (${who}), storage $(docker info -f '{{.Driver}}'); network: $(network_mode)"
    elif pid="$(our_pid)"; then
        log "dockerd pid ${pid} is alive but does not answer (yet); log: ${log_file}"
        return 1
    else
        log "not running"
        return 3
    fi
}

cmd="${1:-}"
case "${cmd}" in
    start | stop | status) ;;
    *) die "usage: $0 start|stop|status" ;;
esac

if ! command -v docker >/dev/null; then
    case "${cmd}" in
        status) log "not installed"; exit 3 ;;
        stop) log "not installed"; exit 0 ;;
    esac
fi

mkdir -p "${state_dir}"
if [[ "${cmd}" == status ]]; then
    status
    exit
fi
exec 9>"${lock_file}"
flock -w 300 9 || die "another docker-engine.sh holds ${lock_file} for 300 s"
"${cmd}"
