#!/usr/bin/env python3
"""Unloaded streaming latency over one keep-alive connection: sends N streamed chat requests
one after another and prints one BENCH line with the time to the first event and to the end
of the stream (p50/p99, microseconds), and how many reads a whole stream took.

    stream_latency.py HOST PORT N [BODY_JSON]

Plain sockets (no HTTP library) so the client adds as little as possible; the figures that
matter are the differences between targets measured the same way.
"""
import socket
import sys
import time

host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
body = (sys.argv[4] if len(sys.argv) > 4 else
        '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hello"}]}').encode()
request = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: %s:%d\r\ncontent-type: application/json\r\n"
           b"content-length: %d\r\n\r\n" % (host.encode(), port, len(body))) + body

sock = socket.create_connection((host, port), timeout=30)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
firsts, wholes, reads, errors = [], [], 0, 0
for _ in range(n):
    t0 = time.perf_counter()
    sock.sendall(request)
    buf, first, count = b"", None, 0
    while True:
        chunk = sock.recv(262144)
        count += 1
        if not chunk:
            sys.exit("the target closed the connection")
        buf += chunk
        if first is None and b"data:" in buf:
            first = time.perf_counter()
        # A chunked body ends with the zero-length chunk.
        if buf.endswith(b"\r\n0\r\n\r\n"):
            break
    t1 = time.perf_counter()
    if b"[DONE]" not in buf or not buf.startswith(b"HTTP/1.1 200"):
        errors += 1
    firsts.append((first or t1) - t0)
    wholes.append(t1 - t0)
    reads += count


def pct(xs, p):
    xs = sorted(xs)
    return int(xs[min(len(xs) - 1, int(len(xs) * p))] * 1e6)


print(f"BENCH requests={n} first_p50_us={pct(firsts, .5)} first_p99_us={pct(firsts, .99)} "
      f"whole_p50_us={pct(wholes, .5)} whole_p99_us={pct(wholes, .99)} reads_per_stream={reads / n:.2f} "
      f"errors={errors}")
