#!/usr/bin/env bash
# A Docker engine for `make containerize`, the container test and CI.
#
#   scripts/docker_engine.sh start     use the engine that answers, else start Debian's dockerd in
#                                      the background (root only) and wait for its socket
#   scripts/docker_engine.sh status    exit 0 when an engine answers
#   scripts/docker_engine.sh stop      stop the dockerd that `start` launched (never another one)
#   scripts/docker_engine.sh cli-dir   a directory whose `docker` can do BuildKit builds
#
# Every failure is one line on stderr, so a test can quote it as its reason.
set -euo pipefail

STATE_DIR="${DOCKER_ENGINE_STATE_DIR:-/tmp/sentiment-dockerd}"
PID_FILE="$STATE_DIR/dockerd.pid"
LOG_FILE="$STATE_DIR/dockerd.log"
WAIT_S="${DOCKER_ENGINE_WAIT_S:-60}"

answers() { docker info >/dev/null 2>&1; }

start() {
    if ! command -v docker >/dev/null 2>&1; then
        echo "no docker CLI on PATH: install Debian's docker.io (apt-get install -y docker.io)" >&2
        return 1
    fi
    if answers; then
        return 0
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        echo "no Docker engine answers and dockerd is not installed (apt-get install -y docker.io)" >&2
        return 1
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "no Docker engine answers and starting dockerd needs root (run: sudo $0 start)" >&2
        return 1
    fi
    mkdir -p "$STATE_DIR"
    # setsid: the engine must outlive the make or pytest process that started it.
    setsid dockerd >"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    for _ in $(seq "$WAIT_S"); do
        if answers; then
            echo "started dockerd (pid $(cat "$PID_FILE"), log $LOG_FILE)"
            return 0
        fi
        if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
            echo "dockerd exited at start: $(tail -n 1 "$LOG_FILE")" >&2
            return 1
        fi
        sleep 1
    done
    echo "dockerd started but its socket did not answer within ${WAIT_S}s (see $LOG_FILE)" >&2
    return 1
}

stop() {
    if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
        kill "$(cat "$PID_FILE")"
        rm -f "$PID_FILE"
        echo "stopped the dockerd this script started"
    else
        echo "no dockerd started by this script is running"
    fi
}

# BentoML builds with DOCKER_BUILDKIT=1. Debian's docker.io CLI (20.10) has BuildKit built in;
# a newer CLI (23+) needs the buildx plugin, and without it every build fails. Prefer the CLI
# on PATH when it can build, else Debian's /usr/bin/docker through a one-link directory.
cli_dir() {
    local cli major
    cli="$(command -v docker || true)"
    [ -n "$cli" ] || { echo "no docker CLI on PATH" >&2; return 1; }
    major="$("$cli" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)"
    if "$cli" buildx version >/dev/null 2>&1 || [ "${major:-99}" -lt 23 ]; then
        dirname "$cli"
        return 0
    fi
    local debian=/usr/bin/docker
    if [ -x "$debian" ] && [ "$debian" != "$cli" ]; then
        major="$("$debian" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)"
        if [ "${major:-99}" -lt 23 ]; then
            mkdir -p "$STATE_DIR/cli"
            ln -sf "$debian" "$STATE_DIR/cli/docker"
            echo "$STATE_DIR/cli"
            return 0
        fi
    fi
    echo "the docker CLI at $cli cannot build with BuildKit (no buildx plugin); install docker-buildx or set DOCKER_BUILDKIT=0" >&2
    return 1
}

case "${1:-start}" in
start) start ;;
status) answers ;;
stop) stop ;;
cli-dir) cli_dir ;;
*)
    echo "usage: $0 start|status|stop|cli-dir" >&2
    exit 2
    ;;
esac
