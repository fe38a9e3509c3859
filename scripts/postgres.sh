#!/usr/bin/env bash
# A throwaway PostgreSQL 15 for the tests and the benchmark: a fresh cluster in a temporary
# directory, run by an unprivileged user (`postgres` when called as root), listening on a free
# loopback port only, with trust authentication (nothing but this machine can reach it).
#
#   eval "$(scripts/postgres.sh start)"   # exports RUNBOARD_TEST_POSTGRES and RUNBOARD_TEST_PG_DIR
#   scripts/postgres.sh halt DIR          # a fast stop, keeping the cluster (tests: an outage)
#   scripts/postgres.sh resume DIR        # starts it again on the same port
#   scripts/postgres.sh stop DIR          # stops it and removes the directory
#
# Commits are not waited for on disk (synchronous_commit=off): like SQLite's WAL with
# synchronous=NORMAL, which runboard uses, a crash of the machine may lose the last commits,
# a crash of the server loses nothing. The write-ahead log is checkpointed at 128 MB instead of
# PostgreSQL's 1 GB: a test run creates a hundred databases, each copied through the log, and
# CI machines share a disk that can be nearly full.
#
# As root on Debian/Ubuntu it installs `postgresql-15` when missing. Progress goes to stderr;
# stdout carries only the exports.
set -euo pipefail

find_bin() {
  for dir in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

# Runs a PostgreSQL tool as the unprivileged owner of the cluster.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
  else
    "$@"
  fi
}

install_if_missing() {
  if find_bin > /dev/null; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "installing PostgreSQL 15 for the shared-store tests" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql-15 > /dev/null
  fi
  find_bin > /dev/null || {
    echo "error: PostgreSQL 15 is not installed (apt-get install postgresql-15)" >&2
    exit 1
  }
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_cluster() {
  local bin="$1" dir="$2" port="$3"
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c synchronous_commit=off -c max_wal_size=128MB -c min_wal_size=32MB" \
    start >&2
}

command="${1:-start}"
case "$command" in
  start)
    install_if_missing
    bin="$(find_bin)"
    dir="$(mktemp -d /tmp/runboard-pg.XXXXXX)"
    if [ "$(id -u)" = 0 ]; then
      chown postgres "$dir"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync > "$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2
      exit 1
    }
    port="$(free_port)"
    echo "$port" > "$dir/port"
    if [ "$(id -u)" = 0 ]; then
      chown postgres "$dir/port"
    fi
    start_cluster "$bin" "$dir" "$port"
    echo "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port in $dir" >&2
    echo "export RUNBOARD_TEST_POSTGRES=postgres://postgres@127.0.0.1:$port"
    echo "export RUNBOARD_TEST_PG_DIR=$dir"
    ;;
  halt)
    dir="${2:?usage: postgres.sh halt DIR}"
    as_owner "$(find_bin)/pg_ctl" -D "$dir/data" -m fast -w stop >&2
    ;;
  resume)
    dir="${2:?usage: postgres.sh resume DIR}"
    start_cluster "$(find_bin)" "$dir" "$(cat "$dir/port")"
    ;;
  stop)
    dir="${2:?usage: postgres.sh stop DIR}"
    bin="$(find_bin)"
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: postgres.sh start | halt DIR | resume DIR | stop DIR" >&2
    exit 2
    ;;
esac
