"""Benchmark 2, the real case: the built-in ``http`` job type POSTs each work item to an internal
API in another process that answers after ``--latency-ms`` (10), with ``--concurrency`` (64) in
flight, batch 100, N = ``--items`` (20,000). Target: >= 80 % of concurrency / latency (6,400/s).

    python benchmarks/bench_http.py                    # 20,000 items
    python benchmarks/bench_http.py --items 100000
    python benchmarks/bench_http.py --job-type http.sync --plugin /tmp/old_http.py   # another job type

The API is a process of its own (on uvloop when installed), started before the timing: POST
/accounts/{account_id} waits and answers 200; GET /items (aiohttp.web) lists the N work items (the
job's ``items_url``; the listing is part of the timed run, as it is in production). The POSTs go to
a lean asyncio protocol by default (``--server asyncio``), since on 2 cores the stand-in API shares
the CPU with the run it measures; ``--server aiohttp`` answers them with aiohttp.web. It counts the
TCP connections it accepted and the requests in flight at most, reported beside the figures.

The engine run is a fresh process (its peak RSS is its own) that first imports each ``--plugin``
file, so that a job type registered there (e.g. the blocking http job type of an earlier commit,
for a before/after pair) can be measured the same way. Writes results/http_wait.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import runpy
import subprocess
import sys
import time
import urllib.request
from typing import Any

import common


class _LeanApi(asyncio.Protocol):
    """``--server asyncio``: an HTTP/1.1 keep-alive server that answers every POST 200 after the
    latency, and costs far less CPU per request than aiohttp.web (~220 us/request here): on a
    2-core machine the stand-in API must not take the CPU the engine run is measured with. Only
    for this benchmark's own client (Content-Length bodies, no chunked encoding, no pipelining)."""

    latency_s = 0.01
    stats: dict[str, int] = {}
    _OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"ok\": true}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport, self.buffer = transport, b""
        self.stats["connections"] += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            start = head.find(b"content-length:")
            length = int(head[start + 15:].split(b"\r\n", 1)[0]) if start >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            self.stats["requests"] += 1
            self.stats["in_flight"] += 1
            self.stats["peak_in_flight"] = max(self.stats["peak_in_flight"], self.stats["in_flight"])
            asyncio.get_running_loop().call_later(self.latency_s, self._answer)

    def _answer(self) -> None:
        self.stats["in_flight"] -= 1
        if not self.transport.is_closing():
            self.transport.write(self._OK)


def serve(latency_ms: float, kind: str) -> None:
    """The internal API (run in its own process): prints its port, serves until killed. The listing
    and the figures are served by aiohttp.web; with ``kind`` asyncio, the POSTs go to a _LeanApi port."""
    from aiohttp import web

    stats = {"requests": 0, "in_flight": 0, "peak_in_flight": 0, "connections": 0}
    peers: set[Any] = set()

    async def post(request: web.Request) -> web.Response:
        await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer not in peers:
            peers.add(peer)
            stats["connections"] = len(peers)
        stats["requests"] += 1
        stats["in_flight"] += 1
        stats["peak_in_flight"] = max(stats["peak_in_flight"], stats["in_flight"])
        try:
            await asyncio.sleep(latency_ms / 1000.0)
        finally:
            stats["in_flight"] -= 1
        return web.json_response({"ok": True})

    async def items(request: web.Request) -> web.Response:
        count = int(request.query["count"])
        return web.json_response([{"account_id": f"ACC-{i:08d}", "payload": common.payload(i)}
                                  for i in range(1, count + 1)])

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    async def reset(request: web.Request) -> web.Response:
        peers.clear()
        stats.update(requests=0, in_flight=0, peak_in_flight=0, connections=0)  # in place: _LeanApi shares it
        return web.json_response(stats)

    async def main() -> None:
        app = web.Application()
        app.add_routes([web.post("/accounts/{account_id}", post), web.get("/items", items),
                        web.get("/stats", get_stats), web.post("/reset", reset)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = post_port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - the port chosen
        if kind == "asyncio":
            _LeanApi.latency_s, _LeanApi.stats = latency_ms / 1000.0, stats
            lean = await asyncio.get_running_loop().create_server(_LeanApi, "127.0.0.1", 0, backlog=1024)
            post_port = lean.sockets[0].getsockname()[1]
        print(port, post_port, flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def _api(base: str, path: str, method: str = "GET") -> dict[str, Any]:
    with urllib.request.urlopen(urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None),
                                timeout=30) as resp:
        return json.loads(resp.read())


def child(spec_json: str) -> None:
    """One engine run (in its own process): import the plugins, then common.run_once."""
    spec = json.loads(spec_json)
    for plugin in spec.pop("plugins", []):
        runpy.run_path(plugin, run_name="bench_http_plugin")
    print(json.dumps(common.run_once(spec)))


def measure(args: argparse.Namespace, base: str, post_base: str) -> dict[str, Any]:
    _api(base, "/reset", "POST")
    spec = {"job_type": args.job_type, "items": args.items, "batch_size": args.batch_size,
            "concurrency": args.concurrency, "plugins": [os.path.abspath(p) for p in args.plugin],
            "params": {"url": post_base + "/accounts/{account_id}", "items_url": f"{base}/items?count={args.items}",
                       "timeout_s": args.timeout_s}}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(common.HERE), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"the run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    run.pop("params", None)
    run["api"] = _api(base, "/stats")
    run["share_of_ideal"] = round(run["items_per_s"] / ideal_rate(args), 3)
    return run


def ideal_rate(args: argparse.Namespace) -> float:
    """Items per second with every slot always waiting: concurrency / latency."""
    return args.concurrency / (args.latency_ms / 1000.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency-ms", type=float, default=10.0)
    ap.add_argument("--timeout-s", type=float, default=10.0, help="the job's params.timeout_s")
    ap.add_argument("--server", choices=("asyncio", "aiohttp"), default="asyncio",
                    help="the API answering the POSTs: a lean asyncio protocol (default) or aiohttp.web")
    ap.add_argument("--job-type", default="http", help="a job type with the http job type's params (default: http)")
    ap.add_argument("--plugin", action="append", default=[], help="a Python file the engine run imports first "
                                                                  "(to register --job-type); repeatable")
    ap.add_argument("--name", default="http_wait", help="results/<name>.json (default: http_wait)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = " ".join(["python benchmarks/bench_http.py", *(sys.argv[1:] if argv is None else argv)])
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(args.latency_ms), args.server],
                              stdout=subprocess.PIPE, text=True)
    try:
        port, post_port = server.stdout.readline().split()
        base, post_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{post_port}"
        print(f"benchmark 2 (http): {args.job_type}, {args.items:,} items, batch {args.batch_size}, "
              f"{args.concurrency} in flight, the API ({args.server}) answers after {args.latency_ms:g} ms ...",
              flush=True)
        t = time.perf_counter()
        run = measure(args, base, post_base)
        run["wall_s_with_process_start"] = round(time.perf_counter() - t, 2)
    finally:
        server.terminate()
        server.wait(timeout=30)
    common.save(args.name, {
        "items": args.items, "batch_size": args.batch_size, "concurrency": args.concurrency,
        "latency_ms": args.latency_ms, "server": args.server, "job_type": args.job_type, "ideal_items_per_s": round(ideal_rate(args)), "run": run,
        "targets": {"share_of_ideal_min": 0.8}, "command": command,
    }, quiet=True)
    api = run["api"]
    print(f"  {run['status']} {run['processed']:,} processed, errors {run['errors_by_code'] or 0}; {run['seconds']:.2f}s "
          f"= {run['items_per_s']:,} items/s = {run['share_of_ideal']:.1%} of {ideal_rate(args):,.0f}/s; "
          f"peak RSS {run['peak_rss_mb']} MB; API: {api['requests']:,} requests over {api['connections']} "
          f"connections, at most {api['peak_in_flight']} in flight")
    print(f"results in {common.RESULTS / (args.name + '.json')}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(float(sys.argv[2]), sys.argv[3])
    elif sys.argv[1:2] == ["--child"]:
        child(sys.argv[2])
    else:
        main()
