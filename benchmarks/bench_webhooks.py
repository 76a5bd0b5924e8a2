"""Webhook accept rate: requests/s and p99 latency over 5,000 POSTs, against a bare endpoint.

Three servers, each on 127.0.0.1 in a process of its own, get the same load from this process
(5,000 JSON POSTs over 50 keep-alive connections from two client processes, after a
warm-up): a bare Starlette endpoint
that reads the body and answers 202 (the ceiling for Starlette on uvicorn here), then pyagent's
webhook app starting a no-op workflow per request with the memory store and with SQLite (the
run recorded, durably, before each 202). Goals: >= 50% of the bare rate on the memory store,
>= 1,000 accepts/s on SQLite. The runs themselves go on after their 202: the time until every
run has finished is printed too, and so is the server's CPU time per request, which does not
depend on how fast the clients are.

Standalone: ``python benchmarks/bench_webhooks.py`` (needs pyagent-webhooks and pyagent-sql).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REQUESTS = 5_000
WARMUP = 500
CONNECTIONS = 50
CLIENTS = 2  # client processes: one Python client alone is slower than the servers measured

SERVER = r'''
import asyncio, socket, sys, time
import uvicorn

kind, store = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY, as uvicorn binds
sock.bind(("127.0.0.1", 0))

if kind == "bare":
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def accept(request):
        await request.body()
        return JSONResponse({"run_id": "x", "status_url": "/runs/x"}, status_code=202)

    app = Starlette(routes=[Route("/hook", accept, methods=["POST"])])

    async def main():
        server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
        loop = asyncio.get_running_loop()
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "cpu":
            print(time.process_time(), flush=True)
        server.should_exit = True
        await task
else:
    from pyagent.orchestrator import Orchestrator, Task, Workflow

    sock.close()
    noop = Workflow(name="noop", steps=[Task(name="t", agent=lambda body: None)])
    orch = Orchestrator(store=None if store == "-" else store)
    orch.on_webhook("/hook", workflow=noop, max_pending=10**6)

    async def main():
        async with orch.serving(port=0, max_running=200) as host:
            print(host.urls[0], flush=True)
            loop = asyncio.get_running_loop()
            while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "cpu":
                print(time.process_time(), flush=True)
            t = time.perf_counter()  # "drain": wait for every run to finish
            while host.in_flight or host.waiting:
                await asyncio.sleep(0.01)
            print(f"{time.perf_counter() - t:.3f}", flush=True)
            await loop.run_in_executor(None, sys.stdin.readline)

asyncio.run(main())
'''


def start(kind: str, store: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, kind, store], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        raise SystemExit(f"{kind} server did not start")
    return proc, url


CLIENT = r'''
import asyncio, json, sys, time
from pyagent_webhooks.loadtest import post_many

url, first, count, connections, go_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])

async def main():
    bodies = [({"n": n, "ref": "main"}, {}) for n in range(first, first + count)]
    time.sleep(max(0.0, go_at - time.time()))
    t = time.perf_counter()
    replies = await post_many(url, "/hook", bodies, connections=connections)
    print(json.dumps({"elapsed": time.perf_counter() - t, "bad": [r.status for r in replies if r.status != 202],
                      "latency": [r.latency for r in replies]}))

asyncio.run(main())
'''


def load(url: str, first: int, count: int) -> tuple[float, list[float]]:
    """(seconds, latencies) of ``count`` POSTs sent by CLIENTS processes at once."""
    import json

    go_at = time.time() + 1.0
    share = count // CLIENTS
    procs = [subprocess.Popen([sys.executable, "-c", CLIENT, url, str(first + i * share), str(share),
                               str(CONNECTIONS // CLIENTS), str(go_at)], stdout=subprocess.PIPE, text=True)
             for i in range(CLIENTS)]
    results = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    bad = [s for r in results for s in r["bad"]]
    if bad:
        raise SystemExit(f"{len(bad)} requests were not accepted: {sorted(set(bad))}")
    return max(r["elapsed"] for r in results), [x for r in results for x in r["latency"]]


def cpu(proc: subprocess.Popen[str]) -> float:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("cpu\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def measure(kind: str, store: str) -> tuple[float, float, float, float, float | None]:
    """(requests/s, median ms, p99 ms, server CPU µs per request, seconds until every run finished)."""
    proc, url = start(kind, store)
    try:
        load(url, 0, WARMUP)
        before = cpu(proc)
        elapsed, latencies = load(url, WARMUP, REQUESTS)
        per_request = (cpu(proc) - before) / REQUESTS * 1e6
        lat = sorted(latencies)
        rate, median, p99 = REQUESTS / elapsed, statistics.median(lat) * 1e3, lat[int(len(lat) * 0.99) - 1] * 1e3
        finished = None
        if kind != "bare":
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("drain\n")
            proc.stdin.flush()
            finished = float(proc.stdout.readline())
        return rate, median, p99, per_request, finished
    finally:
        if proc.stdin is not None:
            try:
                proc.stdin.write("stop\n")
                proc.stdin.flush()
            except BrokenPipeError:
                pass
        proc.wait(60)


def main() -> int:
    print(f"webhook accept rate: {REQUESTS} POSTs over {CONNECTIONS} keep-alive connections "
          f"(after {WARMUP} warm-up), server in its own process on 127.0.0.1, os.cpu_count()={os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="pyagent-bench-") as tmp:
        rows = {
            "bare Starlette 202": measure("bare", "-"),
            "webhook, memory store": measure("pyagent", f"memory://bench-{os.getpid()}"),
            "webhook, SQLite": measure("pyagent", f"sqlite:///{Path(tmp) / 'runs.db'}"),
        }
    bare = rows["bare Starlette 202"][0]
    for name, (rate, median, p99, per_request, finished) in rows.items():
        tail = "" if finished is None else f"; runs all done {finished:.2f}s after the last 202"
        print(f"  {name:24} {rate:7.0f} req/s ({rate / bare:4.0%} of bare)  median {median:6.2f} ms  "
              f"p99 {p99:6.2f} ms  server CPU {per_request:5.0f} µs/request{tail}")
    memory, sqlite = rows["webhook, memory store"][0], rows["webhook, SQLite"][0]
    print(f"  goal: memory store >= 50% of bare — {'meets' if memory >= 0.5 * bare else 'MISSES'} ({memory / bare:.0%})")
    print(f"  goal: SQLite >= 1,000 durable accepts/s — {'meets' if sqlite >= 1000 else 'MISSES'} ({sqlite:.0f}/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
