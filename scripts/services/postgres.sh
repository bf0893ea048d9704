#!/usr/bin/env bash
# A throwaway PostgreSQL server for vishnu's tests, kept entirely under one directory.
#
#   scripts/services/postgres.sh start   DIR  fresh cluster in DIR/postgres on 127.0.0.1 and a free
#                                             port, with database and user `vishnu`; writes
#                                             DIR/postgres.env (VISHNU_POSTGRES_URL, VISHNU_SERVICES_DIR)
#   scripts/services/postgres.sh stop    DIR  fast shutdown of that server (by its PID); data is kept
#   scripts/services/postgres.sh kill    DIR  immediate shutdown, as in a crash (outage tests); data is kept
#   scripts/services/postgres.sh restart DIR  starts the cluster in DIR again, same port and data
#   scripts/services/postgres.sh status  DIR  exits 0 when the server is running
#
# As root, a missing PostgreSQL is installed from Debian (`apt-get install postgresql`) and the
# server runs as the `postgres` user, since PostgreSQL refuses to run as root.
set -euo pipefail

readonly DB_NAME=vishnu
readonly DB_USER=vishnu

die() {
  echo "postgres.sh: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start|stop|kill|restart|status DIR" >&2
  exit 2
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# Runs a PostgreSQL program as the user the server runs as.
as_pg() {
  if is_root; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

find_bindir() {
  local d
  # Newest major version first.
  while IFS= read -r d; do
    if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres && -x $d/psql ]]; then
      echo "$d"
      return 0
    fi
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
  return 1
}

ensure_installed() {
  if bindir=$(find_bindir); then
    return 0
  fi
  if ! is_root; then
    die "PostgreSQL server binaries (initdb, pg_ctl, postgres, psql under /usr/lib/postgresql/*/bin) are missing; install them with 'apt-get install -y postgresql' as root, or run this script as root"
  fi
  echo "postgres.sh: installing PostgreSQL (apt-get install -y postgresql)" >&2
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
  bindir=$(find_bindir) || die "PostgreSQL was installed but no binaries were found under /usr/lib/postgresql/*/bin"
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

# The postmaster's PID if it is running, from the pid file PostgreSQL keeps in its data dir.
server_pid() {
  local pid_file=$base/data/postmaster.pid pid
  [[ -f $pid_file ]] || return 1
  pid=$(head -n 1 "$pid_file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled PID: it must still be a postgres binary.
  [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == */postgres ]] || return 1
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
  (cd "$base" && as_pg "$bindir/pg_ctl" -D "$base/data" -l "$base/postgres.log" -w -t 60 start >/dev/null) ||
    { tail -n 20 "$base/postgres.log" >&2 || true; die "the server did not start; log: $base/postgres.log"; }
  local pid
  pid=$(server_pid) || die "the server started but its pid file is missing"
  echo "$pid" >"$base/postgres.pid"
  local port
  port=$(cat "$base/port")
  for _ in $(seq 1 100); do
    if PGPASSWORD=$(cat "$base/superuser.password") PGCONNECT_TIMEOUT=2 \
      "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -XAtq -c 'SELECT 1' >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  die "the server runs (pid $pid) but does not answer on 127.0.0.1:$port"
}

cmd_start() {
  ensure_installed
  if is_root && ! id postgres >/dev/null 2>&1; then
    die "there is no 'postgres' user to run the server as (PostgreSQL refuses to run as root)"
  fi
  if pid=$(server_pid); then
    die "a server already runs in $base (pid $pid); stop it first"
  fi
  rm -rf "$base"
  mkdir -p "$base/data"
  if is_root; then
    # The server user must be able to reach its files.
    chmod 755 "$dir"
    chown -R postgres:postgres "$base"
    runuser -u postgres -- test -w "$base/data" ||
      die "the postgres user cannot reach $base: use a DIR whose parent directories others may search"
  fi

  local port superuser_password password
  port=$(free_port)
  superuser_password=$(random_secret)
  password=$(random_secret)
  echo "$port" >"$base/port"
  (umask 077 && echo "$superuser_password" >"$base/superuser.password")
  is_root && chown postgres:postgres "$base/superuser.password"

  (cd "$base" && as_pg "$bindir/initdb" -D "$base/data" -U postgres --pwfile="$base/superuser.password" \
    -A scram-sha-256 -E UTF8 --locale=C >"$base/initdb.log" 2>&1) ||
    { tail -n 20 "$base/initdb.log" >&2; die "initdb failed; log: $base/initdb.log"; }
  # Loopback TCP only: no Unix socket, so DIR may be any length.
  cat >>"$base/data/postgresql.conf" <<EOF

# vishnu test server
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
fsync = off
EOF

  start_server
  PGPASSWORD=$superuser_password "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres \
    -X -q -v ON_ERROR_STOP=1 >/dev/null <<EOF
CREATE ROLE $DB_USER LOGIN PASSWORD '$password';
CREATE DATABASE $DB_NAME OWNER $DB_USER;
EOF
  local url="postgres://$DB_USER:$password@127.0.0.1:$port/$DB_NAME"
  "$bindir/psql" "$url" -XAtq -c 'SELECT 1' >/dev/null || die "cannot log in as $DB_USER"

  (umask 077 && cat >"$dir/postgres.env.tmp" <<EOF
export VISHNU_POSTGRES_URL=$url
export VISHNU_SERVICES_DIR=$dir
EOF
  )
  mv "$dir/postgres.env.tmp" "$dir/postgres.env"
  echo "postgres.sh: PostgreSQL runs on 127.0.0.1:$port (pid $(cat "$base/postgres.pid")); source $dir/postgres.env"
}

cmd_stop() {
  local pid
  if ! pid=$(server_pid); then
    echo "postgres.sh: no server runs in $base"
    return 0
  fi
  kill -INT "$pid" # fast shutdown: disconnect clients, checkpoint, exit
  if ! wait_gone "$pid" 30; then
    kill -QUIT "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
  fi
  echo "postgres.sh: stopped pid $pid"
}

cmd_kill() {
  local pid
  pid=$(server_pid) || die "no server runs in $base"
  kill -QUIT "$pid" # immediate shutdown: the postmaster and all backends quit at once
  wait_gone "$pid" 30 || die "pid $pid did not exit"
  echo "postgres.sh: killed pid $pid"
}

cmd_restart() {
  bindir=$(find_bindir) || die "PostgreSQL binaries are missing"
  [[ -f $base/port && -d $base/data ]] || die "no cluster in $base: run 'start' first"
  if pid=$(server_pid); then
    die "a server already runs in $base (pid $pid)"
  fi
  start_server
  echo "postgres.sh: PostgreSQL runs again on 127.0.0.1:$(cat "$base/port") (pid $(cat "$base/postgres.pid"))"
}

cmd_status() {
  local pid
  if pid=$(server_pid); then
    echo "postgres.sh: running, pid $pid, 127.0.0.1:$(cat "$base/port")"
  else
    echo "postgres.sh: not running"
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
base=$dir/postgres
bindir=

case $command in
  start) cmd_start ;;
  stop) cmd_stop ;;
  kill) cmd_kill ;;
  restart) cmd_restart ;;
  status) cmd_status ;;
  *) usage ;;
esac
