#!/usr/bin/env bash
# A bounded soak of `runboard serve` on loopback (about 2 minutes): 64 runs, 2 normal
# subscribers, 500 subscribers that never read, 300 clients sending headers a byte a second,
# and a burst of 20 000 POSTs. It samples the server's RSS every second and times /api/health
# every second (curl, a fresh connection each time), then checks:
#   - the normal subscribers got exactly the stored events (scripts/soak.py);
#   - RSS stayed under SOAK_RSS_LIMIT_MB (default 256);
#   - every health check answered 200 in under 100 ms;
#   - the server stops within 5 s of SIGTERM.
# Then a retention pass (SOAK_RETENTION_SECS, default 90): a SQLite file with
# --retain-runs 30 --retain-every-secs 10 under a steady 20 runs a second, checked by
# scripts/soak_retention.py: no pass fails, runs are removed, the kept finished runs stay
# bounded and the file stops growing.
# Usage: scripts/soak.sh [SECONDS]   (default 110; needs python3 and curl)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-110}"
rss_limit_mb="${SOAK_RSS_LIMIT_MB:-256}"
work="$(mktemp -d)"
trap 'kill "${server:-0}" "${prober:-0}" "${sampler:-0}" 2> /dev/null || true; rm -rf "$work"' EXIT

cargo build --release --bin runboard
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
target/release/runboard serve --addr "127.0.0.1:$port" --db :memory: --concurrency 64 \
  2> "$work/server.log" &
server=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/api/health" > /dev/null && break
  sleep 0.1
done

# RSS every second, in KiB.
(while kill -0 "$server" 2> /dev/null; do
  awk '/^VmRSS/ { print $2 }' "/proc/$server/status" 2> /dev/null || true
  sleep 1
done > "$work/rss") &
sampler=$!

# Health every second: seconds into the soak, status, and seconds taken by curl's own clock.
started="$(date +%s)"
(while kill -0 "$server" 2> /dev/null; do
  printf '%s ' "$(($(date +%s) - started))"
  curl -s -o /dev/null -m 5 -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$port/api/health" || echo "000 5"
  sleep 1
done > "$work/health") &
prober=$!

report="$(python3 scripts/soak.py "$port" "$seconds")"
echo "load: $report"

kill "$prober" 2> /dev/null || true
stop_started="$(date +%s.%N)"
kill -TERM "$server"
stopped=no
for _ in $(seq 50); do
  if ! kill -0 "$server" 2> /dev/null; then stopped=yes; break; fi
  sleep 0.1
done
stop_seconds="$(echo "$(date +%s.%N) - $stop_started" | bc)"
kill "$sampler" 2> /dev/null || true

rss_max_kb="$(sort -n "$work/rss" | tail -1)"
rss_median_kb="$(sort -n "$work/rss" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')"
health_checks="$(wc -l < "$work/health")"
health_bad="$(awk '$2 != 200 || $3 >= 0.1' "$work/health" | wc -l)"
health_max="$(awk '{ print $3 }' "$work/health" | sort -n | tail -1)"
health_median="$(awk '{ print $3 }' "$work/health" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')"
dropped_lines="$(grep -c 'read nothing for' "$work/server.log" || true)"
refused_lines="$(grep -c 'refused a connection' "$work/server.log" || true)"

echo "rss: max $((rss_max_kb / 1024)) MiB, median $((rss_median_kb / 1024)) MiB over $(wc -l < "$work/rss") samples (limit ${rss_limit_mb} MiB)"
echo "health: $health_checks checks, $health_bad failed or slower than 100 ms; median ${health_median}s, max ${health_max}s"
echo "server log: $dropped_lines stalled connections closed; $refused_lines connection-refusal lines"
echo "stop: SIGTERM to exit in ${stop_seconds}s"

failed=0
python3 -c 'import json, sys; sys.exit(0 if json.loads(sys.argv[1])["ok"] else 1)' "$report" \
  || { echo "FAIL: a normal subscriber did not get exactly the stored events"; failed=1; }
[ "$rss_max_kb" -lt $((rss_limit_mb * 1024)) ] || { echo "FAIL: RSS above ${rss_limit_mb} MiB"; failed=1; }
[ "$health_bad" -eq 0 ] || {
  echo "FAIL: health was slow or failed (second, status, seconds):"
  awk '$2 != 200 || $3 >= 0.1' "$work/health" | head
  failed=1
}
[ "$stopped" = yes ] || { echo "FAIL: the server did not stop within 5 s"; failed=1; }

# The retention pass, on a file.
retention_seconds="${SOAK_RETENTION_SECS:-90}"
target/release/runboard serve --addr "127.0.0.1:$port" --db "$work/soak.db" --concurrency 16 \
  --speed 20 --retain-runs 30 --retain-every-secs 10 2> "$work/retention.log" &
server=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/api/health" > /dev/null && break
  sleep 0.1
done
retention="$(python3 scripts/soak_retention.py "$port" "$retention_seconds" "$work/soak.db" 30 10)"
echo "retention: $retention"
kill -TERM "$server"
wait "$server" 2> /dev/null || true
python3 -c 'import json, sys; sys.exit(0 if json.loads(sys.argv[1])["ok"] else 1)' "$retention" \
  || { echo "FAIL: retention on a file did not keep it bounded"; grep -i retention "$work/retention.log" | tail -5; failed=1; }

if [ "$failed" -eq 0 ]; then echo "soak: ok"; else echo "soak: FAILED"; exit 1; fi
