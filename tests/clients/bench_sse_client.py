#!/usr/bin/env python3
"""Follow /api/benchmark-sse with nothing but the standard library.

The seed's example client used the `requests` package; this one does the same job with
urllib: it reads the stream line by line, remembers the `event:` name, and prints each
`data:` line as "<event>: <json>". It stops after --max-events events (0 = never).
"""

import argparse
import json
import sys
import urllib.request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="the server's base URL")
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--max-events", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    url = f"{args.url.rstrip('/')}/api/benchmark-sse?interval={args.interval}"
    request = urllib.request.Request(url, headers={"Accept": "text/event-stream"})
    seen = 0
    event_type = "message"
    with urllib.request.urlopen(request, timeout=args.timeout) as response:
        for raw in response:
            line = raw.decode("utf-8").rstrip("\r\n")
            if not line:
                event_type = "message"
                continue
            if line.startswith("event:"):
                event_type = line[len("event:"):].strip()
            elif line.startswith("data:"):
                data = json.loads(line[len("data:"):].strip())
                print(f"{event_type}: {json.dumps(data, sort_keys=True)}", flush=True)
                seen += 1
                if args.max_events and seen >= args.max_events:
                    return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
