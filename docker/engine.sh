#!/usr/bin/env bash
# Start or stop a Docker engine for envkit's tests on a machine without systemd (CI).
#
#   docker/engine.sh install   apt-get install docker.io containerd runc iptables debootstrap
#   docker/engine.sh start     start dockerd detached (setsid, all fds redirected), wait for it
#   docker/engine.sh stop      SIGTERM the dockerd this script started (by its PID), then SIGKILL
#   docker/engine.sh status
#
# ENVKIT_DOCKERD_LOG (default /var/tmp/envkit-dockerd.log) and ENVKIT_DOCKERD_PIDFILE
# (default /var/tmp/envkit-dockerd.pid) say where the log and the PID go.
set -euo pipefail

LOG="${ENVKIT_DOCKERD_LOG:-/var/tmp/envkit-dockerd.log}"
PIDFILE="${ENVKIT_DOCKERD_PIDFILE:-/var/tmp/envkit-dockerd.pid}"

log() { echo "engine: $*" >&2; }

install_packages() {
    local packages=(docker.io containerd runc iptables debootstrap)
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" = 0 ]; then
        log "packages already installed"
        return 0
    fi
    for attempt in 1 2 3; do
        if DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                "${missing[@]}" >/dev/null; then
            log "installed ${missing[*]}"
            return 0
        fi
        log "apt-get failed (attempt $attempt)"
        sleep $((attempt * 5))
    done
    return 1
}

wait_ready() {
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    return 1
}

start() {
    if docker info >/dev/null 2>&1; then
        log "an engine is already running (not started here, so not stopped here either)"
        rm -f "$PIDFILE"
        return 0
    fi
    # /run is on disk on these machines: a PID file can survive a reboot.
    rm -f /var/run/docker.pid
    local variants=("" "--iptables=false --bridge=none" "--iptables=false --bridge=none --storage-driver=vfs")
    for flags in "${variants[@]}"; do
        log "starting dockerd ${flags}"
        # setsid + every fd redirected: the daemon must not hold CI's output open.
        # shellcheck disable=SC2086
        setsid dockerd $flags </dev/null >>"$LOG" 2>&1 &
        echo $! >"$PIDFILE"
        if wait_ready; then
            log "dockerd is up (pid $(cat "$PIDFILE"))"
            return 0
        fi
        stop || true
    done
    log "dockerd did not come up; see $LOG"
    tail -n 20 "$LOG" >&2 || true
    return 1
}

stop() {
    [ -f "$PIDFILE" ] || return 0
    local pid
    pid="$(cat "$PIDFILE")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        log "stopped dockerd (pid $pid)"
    fi
    rm -f "$PIDFILE"
}

case "${1:-status}" in
    install) install_packages ;;
    start) start ;;
    stop) stop ;;
    status)
        if docker info --format 'engine {{.ServerVersion}}, storage {{.Driver}}' 2>/dev/null; then
            exit 0
        fi
        echo "no engine"
        exit 1
        ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
