"""Memory of `rollout-pipeline serve` under oversized and malformed requests (issue #15).

Starts the HTTP app (the real `create_app`, a Router with a trivial model, SQLite log store) in a
child process with uvicorn on 127.0.0.1, then sends a bounded loop of hostile requests from this
process over raw sockets: 50 MB bodies announced by Content-Length, 50 MB streamed chunked without a
length, JSON nested 100,000 deep, invalid JSON, NaN features, missing features, a retried correlation
id, plus valid predictions. The child's RSS (psutil, resident set of the server process only) is
sampled every 50 ms throughout; the figure printed is its baseline after warm-up, its peak and its
value at the end. PASS when the peak stays under baseline + --bound-mb.

    python benchmarks/bench_serve_memory.py [--rounds 40] [--bound-mb 64]

Before the size limit a single 50 MB body took the server from 225 MB to 991 MB (issue #15).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

MB = 1024 * 1024


def serve(port: int, db_url: str, state: str) -> None:
    """The child: the app on uvicorn, until killed."""
    import uvicorn

    from rollout_pipeline.domain.routing import VariantRoute
    from rollout_pipeline.serving.app import ServeSettings, create_app
    from rollout_pipeline.serving.router import Router
    from rollout_pipeline.serving.writer import LogWriter
    from rollout_pipeline.store.engine import make_engine
    from rollout_pipeline.store.migrate import upgrade
    from rollout_pipeline.store.routing import write_routing

    engine = make_engine(db_url)
    upgrade(engine)
    with engine.begin() as conn:
        write_routing(conn, "m", (VariantRoute("v1", "stable", 100), VariantRoute("v2", "candidate", 0, True)),
                      expected_version=None, actor="bench", reason="bench")
    model = lambda features: float(len(features)) if isinstance(features, list) else 0.0  # noqa: E731
    router = Router(engine, "m", {"v1": model, "v2": model}, spill_dir=Path(state) / "m", refresh_seconds=None)
    feedback = LogWriter(engine, Path(state) / "fb", kind="feedback")
    app = create_app({"m": router}, feedback_writer=feedback, settings=ServeSettings())
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error")


def request(port: int, head: bytes, parts) -> int:
    """Send a hand-made request; return the status (0 when the connection broke before an answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(head)
            for part in parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed without reading the rest: the point of the limit
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def post(port: int, body: bytes, path: str = "/predict/m") -> int:
    head = (f"POST {path} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return request(port, head, [body])


def streamed(port: int, total: int, chunk: int = 256 * 1024) -> int:
    head = (b"POST /predict/m HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    piece = b"%x\r\n" % chunk + b"[" * chunk + b"\r\n"
    return request(port, head, (piece for _ in range(total // chunk)))


def announced(port: int, total: int) -> int:
    """A 50 MB Content-Length, and the body sent for as long as the server reads it."""
    head = (f"POST /predict/m HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
            f"Content-Length: {total}\r\nConnection: close\r\n\r\n").encode()
    block = b"x" * (256 * 1024)
    return request(port, head, (block for _ in range(total // len(block))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--bound-mb", type=float, default=64.0)
    parser.add_argument("--serve", nargs=3, metavar=("PORT", "DB_URL", "STATE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    load_before = os.getloadavg()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.serve[2])
        return 0

    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(port), f"sqlite:///{folder / 'db.sqlite'}",
                              str(folder / "state")], env={**os.environ, "ROLLOUT_STATE_DIR": str(folder / "state")})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if request(port, b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n", []) == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("the server did not start")
        process = psutil.Process(child.pid)
        for i in range(50):  # warm-up: every code path once (imports, pydantic, the writer's first batch)
            post(port, json.dumps({"features": [1, 2, i]}).encode())
        post(port, b"{not json")
        time.sleep(0.5)
        baseline = process.memory_info().rss
        peak = [baseline]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        deep = b'{"features": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        statuses: dict[str, set[int]] = {}
        started = time.perf_counter()
        for r in range(args.rounds):
            for name, send in (
                ("50 MB announced", lambda: announced(port, 50 * MB)),
                ("50 MB chunked", lambda: streamed(port, 50 * MB)),
                ("100,000 deep", lambda: post(port, deep)),
                ("900 KB of nesting", lambda: post(port, b"[" * 900_000)),
                ("invalid JSON", lambda: post(port, b'{"features": [1, 2')),
                ("NaN features", lambda: post(port, b'{"features": [NaN]}')),
                ("no features", lambda: post(port, b"{}")),
                ("retried id", lambda: post(port, b'{"features": [1], "correlation_id": "same"}')),
                ("valid", lambda r=r: post(port, json.dumps({"features": [r]}).encode())),
            ):
                statuses.setdefault(name, set()).add(send())
        elapsed = time.perf_counter() - started
        time.sleep(0.3)
        stop.set()
        sampler.join()
        end = process.memory_info().rss
    finally:
        child.terminate()
        child.wait(30)
    sent = args.rounds * (100 * MB + len(deep) + 900_000)
    print("command: " + shlex.join([sys.executable, *sys.argv]))
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}; load average "
          f"{'/'.join(f'{x:.2f}' for x in load_before)} before, {'/'.join(f'{x:.2f}' for x in os.getloadavg())} after")
    print(f"server RSS (psutil, the uvicorn child process only), {args.rounds} rounds of 9 requests in "
          f"{elapsed:.1f} s, ~{sent / MB:,.0f} MB offered:")
    print(f"  baseline after warm-up {baseline / MB:.1f} MB, peak {peak[0] / MB:.1f} MB "
          f"(+{(peak[0] - baseline) / MB:.1f} MB), at the end {end / MB:.1f} MB")
    for name, got in statuses.items():
        print(f"  {name:<18} -> {sorted(got)}")
    ok = peak[0] - baseline < args.bound_mb * MB
    print(("PASS" if ok else "FAIL") + f": peak growth under {args.bound_mb:g} MB")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
