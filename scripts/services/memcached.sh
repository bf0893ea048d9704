#!/usr/bin/env bash
# Starts and stops the memcached servers that the `memcached` store tests run
# against: two instances bound to 127.0.0.1 on free ports, each a plain child
# process whose PID is kept under DIR (never daemonized, never looked up by name).
#
#   scripts/services/memcached.sh start DIR         start both servers, write DIR/memcached.env
#   scripts/services/memcached.sh stop DIR          stop every server started under DIR
#   scripts/services/memcached.sh kill DIR NAME     stop one server (to test an outage)
#   scripts/services/memcached.sh restart DIR NAME  start it again on the same port (empty)
#   scripts/services/memcached.sh pause DIR NAME    freeze one server (SIGSTOP): it accepts but never answers
#   scripts/services/memcached.sh resume DIR NAME   let it run again (SIGCONT)
#   scripts/services/memcached.sh status DIR        list the servers and whether they run
#
# NAME is one of: node-1 node-2.
# After `start`, `source DIR/memcached.env` sets VISHNU_SERVICES_DIR and
# VISHNU_MEMCACHED_URL (memcache://127.0.0.1:P1,127.0.0.1:P2).
set -euo pipefail

NAMES=(node-1 node-2)
WAIT_SECONDS=20

die() {
    echo "memcached.sh: $*" >&2
    exit 1
}

usage() {
    die "usage: $0 start DIR | stop DIR | kill DIR NAME | restart DIR NAME | pause DIR NAME | resume DIR NAME | status DIR  (NAME: ${NAMES[*]})"
}

# shellcheck source=scripts/services/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

valid_name() {
    local n
    for n in "${NAMES[@]}"; do [[ $n == "$1" ]] && return 0; done
    die "unknown server '$1' (expected one of: ${NAMES[*]})"
}

# Whether PID (from our pid file) is alive and still a memcached, so that a
# recycled PID is never signalled.
is_ours() {
    local pid=$1
    [[ -n $pid && -r /proc/$pid/comm ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == memcached* ]]
}

pid_of() { cat "$BASE/$1.pid" 2>/dev/null || true; }

# Starts one server in the foreground of a background job; its PID is $!.
launch() { # NAME
    local name=$1 dir=$BASE/$1 port
    port=$(cat "$dir/port")
    # -U 0: no UDP. memcached refuses to run as root unless told which user to be.
    local args=(-l 127.0.0.1 -p "$port" -U 0 -m 64 -c 1024)
    if [[ $(id -u) -eq 0 ]]; then args+=(-u root); fi
    memcached "${args[@]}" >>"$dir/server.log" 2>&1 </dev/null &
    echo $! >"$BASE/$name.pid"
}

answers() { # PORT: whether a memcached answers `version` there
    local port=$1 line=""
    { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
    printf 'version\r\n' >&3
    read -r -t 1 line <&3 || true
    exec 3<&- 3>&-
    [[ $line == VERSION* ]]
}

wait_ready() { # NAME
    local name=$1 port pid i
    port=$(cat "$BASE/$name/port")
    pid=$(pid_of "$name")
    for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
        if answers "$port"; then return 0; fi
        is_ours "$pid" || { tail -n 20 "$BASE/$name/server.log" >&2; die "$name exited at start (log above)"; }
        sleep 0.1
    done
    die "$name did not answer on port $port within ${WAIT_SECONDS}s"
}

stop_one() { # NAME
    local name=$1 pid i
    pid=$(pid_of "$name")
    if is_ours "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        kill -CONT "$pid" 2>/dev/null || true # a paused server handles TERM only once resumed
        for ((i = 0; i < 50; i++)); do
            is_ours "$pid" || break
            sleep 0.1
        done
        if is_ours "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
        # Reap it when it is our own child (restart then stop in one shell).
        wait "$pid" 2>/dev/null || true
    fi
    rm -f "$BASE/$name.pid"
}

cmd_start() {
    require_binary memcached memcached
    mkdir -p "$BASE"
    local name
    for name in "${NAMES[@]}"; do
        if is_ours "$(pid_of "$name")"; then
            die "$name is already running under $BASE: run '$0 stop $DIR' first"
        fi
    done
    local ports
    read -r -a ports <<<"$(free_ports ${#NAMES[@]})"
    local i=0
    for name in "${NAMES[@]}"; do
        rm -rf "${BASE:?}/$name"
        mkdir -p "$BASE/$name"
        echo "${ports[$i]}" >"$BASE/$name/port"
        i=$((i + 1))
    done
    for name in "${NAMES[@]}"; do launch "$name"; done
    for name in "${NAMES[@]}"; do wait_ready "$name"; done

    local nodes=() urls
    for name in "${NAMES[@]}"; do
        nodes+=("127.0.0.1:$(cat "$BASE/$name/port")")
    done
    urls=$(IFS=,; echo "${nodes[*]}")
    {
        echo "export VISHNU_SERVICES_DIR=$DIR"
        echo "export VISHNU_MEMCACHED_URL=memcache://$urls"
    } >"$DIR/memcached.env"
    echo "memcached: ${nodes[*]}; source $DIR/memcached.env"
}

cmd_stop() {
    local name
    for name in "${NAMES[@]}"; do stop_one "$name"; done
    rm -f "$DIR/memcached.env"
    echo "memcached: stopped the servers under $BASE"
}

cmd_kill() { # NAME
    valid_name "$1"
    is_ours "$(pid_of "$1")" || die "$1 is not running under $BASE"
    stop_one "$1"
    echo "memcached: $1 stopped (port $(cat "$BASE/$1/port"))"
}

cmd_restart() { # NAME
    valid_name "$1"
    [[ -f $BASE/$1/port ]] || die "$1 was never started under $BASE: run '$0 start $DIR' first"
    stop_one "$1"
    launch "$1"
    wait_ready "$1"
    echo "memcached: $1 running again on port $(cat "$BASE/$1/port")"
}

cmd_signal() { # SIGNAL NAME
    valid_name "$2"
    local pid
    pid=$(pid_of "$2")
    is_ours "$pid" || die "$2 is not running under $BASE"
    kill "-$1" "$pid"
    echo "memcached: sent SIG$1 to $2 (pid $pid)"
}

cmd_status() {
    local name pid
    for name in "${NAMES[@]}"; do
        pid=$(pid_of "$name")
        if is_ours "$pid"; then
            echo "$name: running, pid $pid, port $(cat "$BASE/$name/port")"
        else
            echo "$name: stopped"
        fi
    done
}

[[ $# -ge 2 ]] || usage
command=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
BASE=$DIR/memcached
case $command in
start) [[ $# -eq 2 ]] || usage; cmd_start ;;
stop) [[ $# -eq 2 ]] || usage; cmd_stop ;;
kill) [[ $# -eq 3 ]] || usage; cmd_kill "$3" ;;
restart) [[ $# -eq 3 ]] || usage; cmd_restart "$3" ;;
pause) [[ $# -eq 3 ]] || usage; cmd_signal STOP "$3" ;;
resume) [[ $# -eq 3 ]] || usage; cmd_signal CONT "$3" ;;
status) [[ $# -eq 2 ]] || usage; cmd_status ;;
*) usage ;;
esac
