#!/usr/bin/env bash
# Starts and stops the Redis servers that the `redis` store tests run against:
# one standalone server and a three-master Redis Cluster, all bound to
# 127.0.0.1 on free ports, without persistence, each a plain child process
# whose PID is kept under DIR (never daemonized, never looked up by name).
#
#   scripts/services/redis.sh start DIR         start every server, write DIR/redis.env
#   scripts/services/redis.sh stop DIR          stop every server started under DIR
#   scripts/services/redis.sh kill DIR NAME     stop one server (to test an outage)
#   scripts/services/redis.sh restart DIR NAME  start it again on the same port
#   scripts/services/redis.sh pause DIR NAME    freeze one server (SIGSTOP): it accepts but never answers
#   scripts/services/redis.sh resume DIR NAME   let it run again (SIGCONT)
#   scripts/services/redis.sh status DIR        list the servers and whether they run
#
# NAME is one of: standalone cluster-1 cluster-2 cluster-3.
# After `start`, `source DIR/redis.env` sets VISHNU_SERVICES_DIR,
# VISHNU_REDIS_URL (redis://127.0.0.1:PORT/0) and VISHNU_REDIS_CLUSTER_URL
# (redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3).
set -euo pipefail

NAMES=(standalone cluster-1 cluster-2 cluster-3)
WAIT_SECONDS=20

die() {
    echo "redis.sh: $*" >&2
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

# Whether PID (from our pid file) is alive and still a redis-server, so that a
# recycled PID is never signalled.
is_ours() {
    local pid=$1
    [[ -n $pid && -r /proc/$pid/comm ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]]
}

pid_of() { cat "$BASE/$1.pid" 2>/dev/null || true; }

# Starts one server in the foreground of a background job; its PID is $!.
launch() { # NAME
    local name=$1 dir=$BASE/$1 port bus_port
    port=$(cat "$dir/port")
    local args=(--bind 127.0.0.1 --port "$port" --dir "$dir" --save '' --appendonly no
        --daemonize no --protected-mode yes --logfile '')
    if [[ $name == cluster-* ]]; then
        bus_port=$(cat "$dir/bus_port")
        # The bus port is chosen explicitly: the default (port + 10000) may be taken or out of range.
        args+=(--cluster-enabled yes --cluster-port "$bus_port" --cluster-config-file nodes.conf
            --cluster-node-timeout 3000 --cluster-require-full-coverage no)
    fi
    redis-server "${args[@]}" >>"$dir/server.log" 2>&1 </dev/null &
    echo $! >"$BASE/$name.pid"
}

wait_ready() { # NAME
    local name=$1 port pid i
    port=$(cat "$BASE/$name/port")
    pid=$(pid_of "$name")
    for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
        if [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null || true) == PONG ]]; then
            return 0
        fi
        is_ours "$pid" || { tail -n 20 "$BASE/$name/server.log" >&2; die "$name exited at start (log above)"; }
        sleep 0.1
    done
    die "$name did not answer on port $port within ${WAIT_SECONDS}s"
}

wait_cluster_ok() {
    local name port i ok info
    for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
        ok=yes
        for name in cluster-1 cluster-2 cluster-3; do
            port=$(cat "$BASE/$name/port")
            info=$(redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null || true)
            if [[ $info != *cluster_state:ok* ]]; then ok=no; fi
        done
        if [[ $ok == yes ]]; then return 0; fi
        sleep 0.1
    done
    die "the cluster did not reach cluster_state:ok within ${WAIT_SECONDS}s"
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
    require_binary redis-server redis-server
    require_binary redis-cli redis-tools
    mkdir -p "$BASE"
    local name
    for name in "${NAMES[@]}"; do
        if is_ours "$(pid_of "$name")"; then
            die "$name is already running under $BASE: run '$0 stop $DIR' first"
        fi
    done
    local ports
    read -r -a ports <<<"$(free_ports 7)"
    local i=0
    for name in "${NAMES[@]}"; do
        rm -rf "${BASE:?}/$name"
        mkdir -p "$BASE/$name"
        echo "${ports[$i]}" >"$BASE/$name/port"
        i=$((i + 1))
    done
    for name in cluster-1 cluster-2 cluster-3; do
        echo "${ports[$i]}" >"$BASE/$name/bus_port"
        i=$((i + 1))
    done
    for name in "${NAMES[@]}"; do launch "$name"; done
    for name in "${NAMES[@]}"; do wait_ready "$name"; done

    local nodes=() urls
    for name in cluster-1 cluster-2 cluster-3; do
        nodes+=("127.0.0.1:$(cat "$BASE/$name/port")")
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes \
        >"$BASE/cluster-create.log" 2>&1 || { cat "$BASE/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
    wait_cluster_ok

    urls=$(IFS=,; echo "${nodes[*]}")
    {
        echo "export VISHNU_SERVICES_DIR=$DIR"
        echo "export VISHNU_REDIS_URL=redis://127.0.0.1:$(cat "$BASE/standalone/port")/0"
        echo "export VISHNU_REDIS_CLUSTER_URL=redis+cluster://$urls"
    } >"$DIR/redis.env"
    echo "redis: standalone on $(cat "$BASE/standalone/port"), cluster on ${nodes[*]}; source $DIR/redis.env"
}

cmd_stop() {
    local name
    for name in "${NAMES[@]}"; do stop_one "$name"; done
    rm -f "$DIR/redis.env"
    echo "redis: stopped the servers under $BASE"
}

cmd_kill() { # NAME
    valid_name "$1"
    is_ours "$(pid_of "$1")" || die "$1 is not running under $BASE"
    stop_one "$1"
    echo "redis: $1 stopped (port $(cat "$BASE/$1/port"))"
}

cmd_restart() { # NAME
    valid_name "$1"
    [[ -f $BASE/$1/port ]] || die "$1 was never started under $BASE: run '$0 start $DIR' first"
    stop_one "$1"
    launch "$1"
    wait_ready "$1"
    if [[ $1 == cluster-* ]]; then wait_cluster_ok; fi
    echo "redis: $1 running again on port $(cat "$BASE/$1/port")"
}

cmd_signal() { # SIGNAL NAME
    valid_name "$2"
    local pid
    pid=$(pid_of "$2")
    is_ours "$pid" || die "$2 is not running under $BASE"
    kill "-$1" "$pid"
    echo "redis: sent SIG$1 to $2 (pid $pid)"
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
BASE=$DIR/redis
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
