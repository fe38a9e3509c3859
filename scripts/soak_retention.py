#!/usr/bin/env python3
"""Retention load for scripts/soak.sh, on loopback only, standard library only.

Against a running `runboard serve` on a SQLite file with `--retain-runs KEEP`, it launches runs
at a steady rate for SECONDS and, every 2 s, samples the finished runs kept, the runs going,
the database file's size (with its write-ahead log) and retention's record on /api/health.
It prints one JSON object; `ok` is false when a retention pass failed, when no pass removed
anything, when the kept finished runs exceed KEEP plus what finishes between two passes, or
when the file kept growing in the second half of the soak (more than 10 % above the first
half's largest size).

Usage: soak_retention.py PORT SECONDS DB_PATH KEEP EVERY_SECS
"""

import json
import os
import sys
import threading
import time
import urllib.request

HOST = "127.0.0.1"
RATE = 20  # runs launched per second


def call(port, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://{HOST}:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def launch(port, until, launched):
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            call(port, "POST", "/api/runs", {"task": "retention soak", "params": {"iterations": 1}})
            launched[0] += 1
        except Exception:  # a refusal (queue full) is load, not a failure of retention
            launched[1] += 1
        time.sleep(max(0.0, 1 / RATE - (time.monotonic() - started)))


def file_size(path):
    return sum(
        os.path.getsize(name) for name in (path, path + "-wal") if os.path.exists(name)
    )


def main():
    port, seconds, db, keep, every = (
        int(sys.argv[1]),
        float(sys.argv[2]),
        sys.argv[3],
        int(sys.argv[4]),
        float(sys.argv[5]),
    )
    start = time.monotonic()
    until = start + seconds
    launched = [0, 0]
    loader = threading.Thread(target=launch, args=(port, until, launched), daemon=True)
    loader.start()
    samples = []
    while time.monotonic() < until:
        time.sleep(2)
        runs = call(port, "GET", "/api/runs?limit=1000")["runs"]
        going = sum(1 for run in runs if run["status"] in ("queued", "running"))
        record = call(port, "GET", "/api/health").get("retention") or {}
        samples.append(
            {
                "t": round(time.monotonic() - start, 1),
                "finished": len(runs) - going,
                "going": going,
                "bytes": file_size(db),
                "removed": record.get("removed_runs_total", 0),
                "failures_in_a_row": record.get("failures_in_a_row", 0),
                "last_error": record.get("last_error"),
            }
        )
    loader.join()
    # Between two passes up to EVERY seconds of launches finish and are kept, plus slack.
    bound = keep + int(RATE * every * 1.5)
    settled = [s for s in samples if s["t"] > 2 * every]
    half = len(samples) // 2
    first_max = max((s["bytes"] for s in samples[:half]), default=0)
    second_max = max((s["bytes"] for s in samples[half:]), default=0)
    problems = []
    if any(s["failures_in_a_row"] for s in samples):
        problems.append("a retention pass failed")
    if not samples or samples[-1]["removed"] == 0:
        problems.append("retention removed nothing")
    if any(s["finished"] > bound for s in settled):
        problems.append(f"more than {bound} finished runs kept")
    if second_max > first_max * 1.1:
        problems.append(f"the file kept growing: {first_max} then {second_max} bytes")
    print(
        json.dumps(
            {
                "ok": not problems,
                "problems": problems,
                "launched": launched[0],
                "refused": launched[1],
                "kept_finished_max": max((s["finished"] for s in settled), default=0),
                "bound": bound,
                "removed": samples[-1]["removed"] if samples else 0,
                "bytes_first_half_max": first_max,
                "bytes_second_half_max": second_max,
            }
        )
    )


if __name__ == "__main__":
    main()
