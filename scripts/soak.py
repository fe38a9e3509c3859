#!/usr/bin/env python3
"""Load for scripts/soak.sh, on loopback only, standard library only.

Against a running `runboard serve` it starts, all at once and for a bounded time:
  - 2 normal subscribers of /api/events from the beginning, recording every event;
  - 64 runs;
  - 500 subscribers of /api/events that never read a byte (small receive buffers);
  - 300 clients sending their request headers one byte per second (reconnecting when cut);
  - a burst of 20 000 POST /api/runs over 32 keep-alive connections.
At the end it checks that each normal subscriber got exactly the stored events up to the
head it saw, counts how the server answered the burst and how many stalled subscribers it
dropped, and prints one JSON object.
"""

import asyncio
import json
import sys
import time

HOST = "127.0.0.1"


async def open_connection(port, rcvbuf=None):
    if rcvbuf is None:
        return await asyncio.open_connection(HOST, port)
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    return await asyncio.open_connection(sock=sock)


async def request(reader, writer, method, path, body=None):
    """One request on a keep-alive connection; returns (status, headers, body)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n"
    data = b""
    if body is not None:
        data = json.dumps(body).encode()
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    writer.write(head.encode() + b"\r\n" + data)
    await writer.drain()
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        key, _, value = line.decode().partition(":")
        headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    payload = await reader.readexactly(length) if length else b""
    return status, headers, payload


async def get_json(port, path):
    reader, writer = await open_connection(port)
    try:
        status, _, payload = await request(reader, writer, "GET", path)
        return status, json.loads(payload)
    finally:
        writer.close()


class Subscriber:
    """Reads /api/events from the start, keeping (id, event, data) of every event with an id."""

    def __init__(self, port, after=0):
        self.port = port
        self.after = after
        self.events = {}
        self.duplicates = 0
        self.newest = after

    async def run(self, until):
        reader, writer = await open_connection(self.port)
        writer.write(
            f"GET /api/events HTTP/1.1\r\nHost: {HOST}\r\nAccept: text/event-stream\r\n"
            f"Last-Event-ID: {self.after}\r\n\r\n".encode()
        )
        await writer.drain()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        body = ChunkedLines(reader)
        fields = {}
        try:
            while not until():
                line = await asyncio.wait_for(body.readline(), 30)
                if line is None:
                    break
                if line == "":
                    if "data" in fields and "id" in fields:
                        seq = int(fields["id"])
                        if seq in self.events:
                            self.duplicates += 1
                        self.events[seq] = (fields.get("event", "message"), fields["data"])
                        self.newest = max(self.newest, seq)
                    fields = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    fields[key] = fields[key] + "\n" + value if key == "data" and key in fields else value
        finally:
            writer.close()


class ChunkedLines:
    """Lines of a chunked HTTP body (the server streams with Transfer-Encoding: chunked)."""

    def __init__(self, reader):
        self.reader = reader
        self.buffer = b""

    async def readline(self):
        while b"\n" not in self.buffer:
            size_line = await self.reader.readline()
            if not size_line:
                return None
            size = int(size_line.strip() or b"0", 16)
            if size == 0:
                return None
            self.buffer += await self.reader.readexactly(size)
            await self.reader.readexactly(2)
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode().rstrip("\r")


async def stalled_subscriber(port, held):
    try:
        reader, writer = await open_connection(port, rcvbuf=4096)
        writer.write(f"GET /api/events HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        await writer.drain()
        held.append((reader, writer))
    except OSError:
        pass


async def slow_header_client(port, until, counts):
    request_bytes = f"GET /api/health HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: {'a' * 64}\r\n\r\n".encode()
    while not until():
        try:
            reader, writer = await open_connection(port)
        except OSError:
            await asyncio.sleep(1)
            continue
        counts["connections"] += 1
        try:
            for byte in request_bytes:
                if until():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(1)
            else:
                counts["completed"] += 1
        except (ConnectionError, OSError):
            counts["cut"] += 1
        finally:
            writer.close()


async def burst(port, total, connections, tally):
    remaining = [total]

    async def worker():
        reader = writer = None
        while remaining[0] > 0:
            remaining[0] -= 1
            try:
                if writer is None:
                    reader, writer = await open_connection(port)
                status, headers, _ = await request(
                    reader, writer, "POST", "/api/runs", {"task": "soak burst", "params": {"iterations": 1}}
                )
                tally[status] = tally.get(status, 0) + 1
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    writer = None
            except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                tally["error"] = tally.get("error", 0) + 1
                writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))


async def still_open(reader):
    """True when a stalled subscriber's connection is still open (reading drains it)."""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 0.5)
            if not chunk:
                return False
    except asyncio.TimeoutError:
        return True
    except (ConnectionError, OSError):
        return False


async def main(port, seconds):
    started = time.monotonic()
    deadline = started + seconds
    over = lambda: time.monotonic() > deadline  # noqa: E731
    report = {}
    normal = [Subscriber(port), Subscriber(port)]
    stop_normal = [False]
    normal_tasks = [asyncio.create_task(s.run(lambda: stop_normal[0])) for s in normal]
    await asyncio.sleep(0.5)

    runs = []
    reader, writer = await open_connection(port)
    for index in range(64):
        status, _, payload = await request(
            reader, writer, "POST", "/api/runs",
            {"task": f"soak run {index}", "params": {"iterations": 6}},
        )
        assert status == 201, (status, payload)
        runs.append(json.loads(payload)["run_id"])
    writer.close()

    held = []
    for batch in range(10):
        await asyncio.gather(*(stalled_subscriber(port, held) for _ in range(50)))
    report["stalled_subscribers_opened"] = len(held)

    slow_counts = {"connections": 0, "completed": 0, "cut": 0}
    slow_until = lambda: time.monotonic() > deadline - 15  # noqa: E731
    slow_tasks = [asyncio.create_task(slow_header_client(port, slow_until, slow_counts)) for _ in range(300)]

    await asyncio.sleep(5)
    tally = {}
    burst_started = time.monotonic()
    await burst(port, 20_000, 32, tally)
    report["burst"] = {"started_at": round(burst_started - started, 1),
                       "seconds": round(time.monotonic() - burst_started, 1),
                       "answers": {str(k): v for k, v in sorted(tally.items(), key=str)}}

    while not over():
        await asyncio.sleep(1)
    await asyncio.gather(*slow_tasks)
    report["slow_header_clients"] = slow_counts

    open_now = sum(await asyncio.gather(*(still_open(r) for r, _ in held)))
    report["stalled_subscribers_dropped_by_server"] = len(held) - open_now
    for _, w in held:
        w.close()

    # Exactly the stored events: up to the head the server reports now.
    _, health = await get_json(port, "/api/health")
    head = health["events_head"]
    wait_until = time.monotonic() + 60
    while min(s.newest for s in normal) < head and time.monotonic() < wait_until:
        await asyncio.sleep(0.2)
    stop_normal[0] = True
    stored = Subscriber(port)
    await stored.run(lambda: stored.newest >= head)
    expected = {k: v for k, v in stored.events.items() if k <= head}
    exact = []
    for subscriber in normal:
        got = {k: v for k, v in subscriber.events.items() if k <= head}
        exact.append(got == expected and subscriber.duplicates == 0)
    report["head"] = head
    report["normal_subscribers"] = [
        {"events": len({k for k in s.events if k <= head}), "duplicates": s.duplicates, "exact": ok}
        for s, ok in zip(normal, exact)
    ]
    report["stored_events_up_to_head"] = len(expected)
    report["ok"] = all(exact) and len(expected) == head
    for task in normal_tasks:
        task.cancel()
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
