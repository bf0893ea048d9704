#!/usr/bin/env bash
# A throwaway MariaDB server for vishnu's tests, kept entirely under one directory.
#
#   scripts/services/mariadb.sh start   DIR  fresh data dir in DIR/mariadb, server on 127.0.0.1 and a
#                                            free port, with database and user `vishnu`; writes
#                                            DIR/mariadb.env (VISHNU_MYSQL_URL, VISHNU_SERVICES_DIR)
#   scripts/services/mariadb.sh stop    DIR  clean shutdown of that server (by its PID); data is kept
#   scripts/services/mariadb.sh kill    DIR  SIGKILL, as in a crash (outage tests); data is kept
#   scripts/services/mariadb.sh restart DIR  starts the server in DIR again, same port and data
#   scripts/services/mariadb.sh status  DIR  exits 0 when the server is running
#
# As root, a missing MariaDB is installed from Debian (`apt-get install mariadb-server`) and the
# server runs with --user=root.
set -euo pipefail

readonly DB_NAME=vishnu
readonly DB_USER=vishnu

die() {
  echo "mariadb.sh: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start|stop|kill|restart|status DIR" >&2
  exit 2
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# The first of the given programs found on PATH or in /usr/sbin.
find_program() {
  local name
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    fi
    if [[ -x /usr/sbin/$name ]]; then
      echo "/usr/sbin/$name"
      return 0
    fi
  done
  return 1
}

find_binaries() {
  server=$(find_program mariadbd mysqld) || return 1
  install_db=$(find_program mariadb-install-db mysql_install_db) || return 1
  client=$(find_program mariadb mysql) || return 1
  admin=$(find_program mariadb-admin mysqladmin) || return 1
}

ensure_installed() {
  if find_binaries; then
    return 0
  fi
  local missing=()
  find_program mariadbd mysqld >/dev/null || missing+=(mariadbd)
  find_program mariadb-install-db mysql_install_db >/dev/null || missing+=(mariadb-install-db)
  find_program mariadb mysql >/dev/null || missing+=(mariadb)
  find_program mariadb-admin mysqladmin >/dev/null || missing+=(mariadb-admin)
  if ! is_root; then
    die "missing MariaDB programs: ${missing[*]}; install them with 'apt-get install -y mariadb-server' as root, or run this script as root"
  fi
  echo "mariadb.sh: installing MariaDB (apt-get install -y mariadb-server), missing: ${missing[*]}" >&2
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y mariadb-server
  find_binaries || die "mariadb-server was installed but its programs were not found"
}

free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  die "found no free port"
}

random_secret() {
  head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'
}

socket_path() { echo "$base/run/mysqld.sock"; }

# The server's PID if it is running, from the pid file it was started with.
server_pid() {
  local pid
  [[ -f $base/mariadb.pid ]] || return 1
  pid=$(cat "$base/mariadb.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled PID: it must still be a MariaDB server binary.
  [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */mariadbd || $(readlink "/proc/$pid/exe" 2>/dev/null) == */mysqld ]] || return 1
  echo "$pid"
}

wait_gone() {
  local pid=$1 seconds=$2
  for _ in $(seq 1 $((seconds * 10))); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

start_server() {
  local port user_args=()
  port=$(cat "$base/port")
  is_root && user_args=(--user=root)
  # setsid + nohup: the server must outlive this script and not hold the caller's output open.
  setsid nohup "$server" --no-defaults \
    --datadir="$base/data" \
    --socket="$(socket_path)" \
    --port="$port" \
    --bind-address=127.0.0.1 \
    --pid-file="$base/mariadbd.pid" \
    --log-error="$base/mariadb.log" \
    --skip-name-resolve \
    --innodb-buffer-pool-size=64M \
    --innodb-flush-log-at-trx-commit=2 \
    "${user_args[@]}" \
    </dev/null >>"$base/mariadbd.out" 2>&1 &
  local pid=$!
  echo "$pid" >"$base/mariadb.pid"
  for _ in $(seq 1 600); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$base/mariadb.log" >&2 || true
      die "the server exited while starting; log: $base/mariadb.log"
    fi
    if "$admin" --no-defaults --socket="$(socket_path)" -uroot --connect-timeout=2 ping >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  die "the server (pid $pid) did not answer within 60 s; log: $base/mariadb.log"
}

cmd_start() {
  ensure_installed
  if pid=$(server_pid); then
    die "a server already runs in $base (pid $pid); stop it first"
  fi
  rm -rf "$base"
  mkdir -p "$base/data" "$base/run"
  local socket
  socket=$(socket_path)
  ((${#socket} < 100)) || die "socket path $socket is too long for a Unix socket: use a shorter DIR"

  local port password
  port=$(free_port)
  password=$(random_secret)
  echo "$port" >"$base/port"
  local user_args=()
  is_root && user_args=(--user=root)
  "$install_db" --no-defaults --datadir="$base/data" --auth-root-authentication-method=socket \
    --skip-test-db "${user_args[@]}" >"$base/install-db.log" 2>&1 ||
    { tail -n 20 "$base/install-db.log" >&2; die "mariadb-install-db failed; log: $base/install-db.log"; }

  start_server
  # root logs in through the socket (unix_socket authentication); the tests use TCP and a password.
  "$client" --no-defaults --socket="$socket" -uroot <<EOF
CREATE DATABASE $DB_NAME CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER '$DB_USER'@'%' IDENTIFIED BY '$password';
CREATE USER '$DB_USER'@'localhost' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$DB_USER'@'%';
GRANT ALL PRIVILEGES ON $DB_NAME.* TO '$DB_USER'@'localhost';
EOF
  "$client" --no-defaults -h127.0.0.1 -P"$port" -u"$DB_USER" -p"$password" "$DB_NAME" -e 'SELECT 1' >/dev/null ||
    die "cannot log in as $DB_USER over TCP"

  (umask 077 && cat >"$dir/mariadb.env.tmp" <<EOF
export VISHNU_MYSQL_URL=mysql://$DB_USER:$password@127.0.0.1:$port/$DB_NAME
export VISHNU_SERVICES_DIR=$dir
EOF
  )
  mv "$dir/mariadb.env.tmp" "$dir/mariadb.env"
  echo "mariadb.sh: MariaDB runs on 127.0.0.1:$port (pid $(cat "$base/mariadb.pid")); source $dir/mariadb.env"
}

cmd_stop() {
  local pid
  if ! pid=$(server_pid); then
    echo "mariadb.sh: no server runs in $base"
    return 0
  fi
  kill -TERM "$pid" # clean shutdown
  wait_gone "$pid" 60 || { kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 10 || true; }
  echo "mariadb.sh: stopped pid $pid"
}

cmd_kill() {
  local pid
  pid=$(server_pid) || die "no server runs in $base"
  kill -KILL "$pid"
  wait_gone "$pid" 30 || die "pid $pid did not exit"
  echo "mariadb.sh: killed pid $pid"
}

cmd_restart() {
  find_binaries || die "MariaDB programs are missing"
  [[ -f $base/port && -d $base/data ]] || die "no data dir in $base: run 'start' first"
  if pid=$(server_pid); then
    die "a server already runs in $base (pid $pid)"
  fi
  start_server
  echo "mariadb.sh: MariaDB runs again on 127.0.0.1:$(cat "$base/port") (pid $(cat "$base/mariadb.pid"))"
}

cmd_status() {
  local pid
  if pid=$(server_pid); then
    echo "mariadb.sh: running, pid $pid, 127.0.0.1:$(cat "$base/port")"
  else
    echo "mariadb.sh: not running"
    return 1
  fi
}

[[ $# -eq 2 ]] || usage
command=$1
if [[ $command == start ]]; then
  mkdir -p "$2"
fi
[[ -d $2 ]] || die "no directory $2"
dir=$(cd "$2" && pwd -P)
base=$dir/mariadb
server='' install_db='' client='' admin=''

case $command in
  start) cmd_start ;;
  stop) cmd_stop ;;
  kill) cmd_kill ;;
  restart) cmd_restart ;;
  status) cmd_status ;;
  *) usage ;;
esac
