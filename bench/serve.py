"""Serving benchmark: ``conceptseg serve`` in a subprocess, driven by N concurrent httpx clients.

Each client loops until the duration is spent: it picks the next route of ``--route`` (round
robin), sends the request, records status and latency; on 429 it waits the server's
Retry-After (at most 1 s) like a polite client. Reported per route: requests, 2xx, 429, other
answers, transport errors (lost requests), p50/p99 latency of 2xx answers, 2xx per second;
then the 429 share and the server's peak RSS (VmHWM of /proc/<pid>/status).

Routes: ``segment`` (POST /v1/segment, multipart upload, one phrase), ``session`` (POST
/v1/images/{id}/segment on an uploaded image: encoding cached), ``refine`` (POST
/v1/images/{id}/refine, one click), ``health`` (GET /v1/health).

    python bench/serve.py --clients 50 --duration 20                 # the shipped model
    python bench/serve.py --full --clients 8 --duration 60           # sam3 config, random weights
    python bench/serve.py --route segment --route health --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "conceptseg" / "assets" / "examples"
ROUTES = ("segment", "session", "refine", "health")


@dataclass
class Record:
    """Every answer of one route."""

    statuses: list[int] = field(default_factory=list)  # HTTP status of each answer
    ok_ms: list[float] = field(default_factory=list)  # latency of each 2xx answer
    bad: list[str] = field(default_factory=list)  # answers outside the contract (first few)
    lost: int = 0  # requests that got no answer (transport error, client timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(port: int, flags: list[str], log: Path, wait: float = 600.0) -> subprocess.Popen:
    """``conceptseg serve`` on 127.0.0.1:port, returned once /v1/health answers."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "conceptseg", "serve", "--port",
                                 str(port), *flags], stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    end = time.monotonic() + wait
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError(f"server did not answer within {wait:g} s:\n{log.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


def check_body(route: str, status: int, body, headers) -> str | None:
    """What is wrong with an answer under the contract (docs/API.md), or None."""
    if status == 429:
        ok = isinstance(body, dict) and isinstance(body.get("error"), dict) and \
            {"code", "message"} <= set(body["error"]) and "retry-after" in headers
        return None if ok else f"429 without an error body or Retry-After: {body!r:.200}"
    if not 200 <= status < 300:
        return f"status {status}: {body!r:.200}"
    if route == "health":
        return None if isinstance(body, dict) and body.get("status") == "ok" else "bad health"
    if route == "refine":
        masks = body.get("masks") if isinstance(body, dict) else None
        if not masks or not all({"score", "box_xyxy", "area", "mask"} <= set(m) for m in masks):
            return f"bad refine body: {body!r:.200}"
        return None
    results = body.get("results") if isinstance(body, dict) else None
    keys = {"text", "presence", "no_match", "count", "instances"}
    if not isinstance(results, list) or not results or not all(
            isinstance(r, dict) and keys <= set(r) and r["count"] == len(r["instances"]) and all(
                {"id", "score", "box_xyxy", "area", "mask"} <= set(i) for i in r["instances"])
            for r in results):
        return f"bad segment body: {body!r:.200}"
    return None


class Driver:
    """The requests of each route against one server."""

    def __init__(self, base: str, image: Path, phrase: str, timeout: float, clients: int):
        self.base, self.image, self.phrase = base, image.read_bytes(), phrase
        self.http = httpx.AsyncClient(base_url=base, timeout=timeout, limits=httpx.Limits(
            max_connections=clients + 4, max_keepalive_connections=clients + 4))
        self.image_id = None

    async def prepare(self) -> None:
        """Upload the image once and segment it once (the session and refine routes use it)."""
        r = await self.http.post("/v1/images", files={"image": ("bench.png", self.image)})
        if r.status_code != 200:
            raise RuntimeError(f"POST /v1/images answered {r.status_code}: {r.text[:300]}")
        self.image_id = r.json()["image_id"]
        r = await self.http.post(f"/v1/images/{self.image_id}/segment",
                                 json={"text": [self.phrase], "format": "none"})
        if r.status_code != 200:
            raise RuntimeError(f"POST /v1/images/{{id}}/segment answered {r.status_code}: "
                               f"{r.text[:300]}")

    def request(self, route: str):
        if route == "segment":
            return self.http.post("/v1/segment", files={"image": ("bench.png", self.image)},
                                  data={"text": self.phrase, "format": "rle"})
        if route == "session":
            return self.http.post(f"/v1/images/{self.image_id}/segment",
                                  json={"text": [self.phrase], "format": "rle"})
        if route == "refine":
            return self.http.post(f"/v1/images/{self.image_id}/refine",
                                  json={"points": [[100, 100]], "labels": [1], "format": "rle"})
        return self.http.get("/v1/health")

    async def one(self, route: str, rec: Record) -> float:
        """Send one request; returns the seconds to wait before the next one (Retry-After)."""
        t = time.perf_counter()
        try:
            r = await self.request(route)
        except httpx.HTTPError:
            rec.lost += 1
            return 0.0
        ms = (time.perf_counter() - t) * 1000
        try:
            body = r.json()
        except ValueError:
            body = r.text
        rec.statuses.append(r.status_code)
        problem = check_body(route, r.status_code, body, r.headers)
        if problem and len(rec.bad) < 5:
            rec.bad.append(problem)
        elif problem:
            rec.bad.append("...")
        if 200 <= r.status_code < 300:
            rec.ok_ms.append(ms)
        if r.status_code == 429:
            try:
                return min(float(r.headers.get("retry-after", 1)), 1.0)
            except ValueError:
                return 1.0
        return 0.0

    async def client(self, k: int, routes: list[str], end: float, recs: dict) -> None:
        i = k
        while time.monotonic() < end:
            route = routes[i % len(routes)]
            i += 1
            wait = await self.one(route, recs[route])
            if wait:
                await asyncio.sleep(wait)

    async def run(self, clients: int, duration: float, routes: list[str]) -> tuple[dict, float]:
        recs = {r: Record() for r in routes}
        t0 = time.monotonic()
        await asyncio.gather(*(self.client(k, routes, t0 + duration, recs)
                               for k in range(clients)))
        return recs, time.monotonic() - t0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def summarise(recs: dict, elapsed: float, rss_mb: float) -> dict:
    rows = {}
    for route, rec in recs.items():
        n = len(rec.statuses) + rec.lost
        rows[route] = {"requests": n, "2xx": len(rec.ok_ms),
                       "429": sum(s == 429 for s in rec.statuses),
                       "other": sum(not (200 <= s < 300 or s == 429) for s in rec.statuses),
                       "lost": rec.lost, "malformed": len(rec.bad), "bad": rec.bad,
                       "p50_ms": percentile(rec.ok_ms, 50), "p99_ms": percentile(rec.ok_ms, 99),
                       "ok_per_s": len(rec.ok_ms) / elapsed}
    total = sum(r["requests"] for r in rows.values())
    return {"routes": rows, "seconds": elapsed, "requests": total,
            "requests_per_s": total / elapsed,
            "share_429": sum(r["429"] for r in rows.values()) / max(total, 1),
            "server_peak_rss_mb": rss_mb}


def table(s: dict) -> str:
    lines = ["| route | requests | 2xx | 429 | other | lost | p50 ms | p99 ms | 2xx/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for route, r in s["routes"].items():
        lines.append(f"| {route} | {r['requests']} | {r['2xx']} | {r['429']} | {r['other']} | "
                     f"{r['lost']} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
                     f"{r['ok_per_s']:.1f} |")
    lines.append(f"\n{s['requests']} requests in {s['seconds']:.1f} s "
                 f"({s['requests_per_s']:.1f}/s), 429 share {s['share_429']:.1%}, "
                 f"server peak RSS {s['server_peak_rss_mb']:.0f} MiB")
    return "\n".join(lines)


def bench(clients: int, duration: float, routes: list[str], flags: list[str],
          timeout: float = 120.0, log: Path | None = None) -> dict:
    """Start a server with ``flags``, drive it, stop it; the summary (see :func:`summarise`)."""
    prompts = json.loads((EXAMPLES / "prompts.json").read_text())
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = log or Path(tmp) / "server.log"
        proc = start_server(port, flags, log)
        try:
            driver = Driver(f"http://127.0.0.1:{port}", EXAMPLES / "scene0.png",
                            prompts["scene0.png"][0], timeout, clients)

            async def go():
                try:
                    await driver.prepare()
                    return await driver.run(clients, duration, routes)
                finally:
                    await driver.http.aclose()

            recs, elapsed = asyncio.run(go())
            alive = proc.poll() is None
            rss = peak_rss_mb(proc.pid) if alive else float("nan")
        finally:
            stop_server(proc)
    out = summarise(recs, elapsed, rss)
    out["server_alive"] = alive
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    p.add_argument("--route", action="append", choices=ROUTES,
                   help="route(s) each client cycles through (default: all)")
    p.add_argument("--full", action="store_true",
                   help="the full sam3 config with random weights instead of the shipped model")
    p.add_argument("--queue-depth", type=int, default=32)
    p.add_argument("--timeout", type=float, default=60.0,
                   help="the server's per-request timeout, seconds (the clients wait twice that)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args()
    flags = ["--queue-depth", str(args.queue_depth), "--device", args.device,
             "--timeout", str(args.timeout)]
    if args.full:
        flags += ["--random-weights", "sam3"]
    try:
        s = bench(args.clients, args.duration, args.route or list(ROUTES), flags,
                  timeout=2 * args.timeout)
    except (RuntimeError, httpx.HTTPError) as e:
        print(f"bench/serve.py: {e}", file=sys.stderr)
        return 1
    print(f"conceptseg serve ({'sam3 config, random weights' if args.full else 'shipped model'}"
          f", {args.device}), {args.clients} clients, {args.duration:g} s, queue depth "
          f"{args.queue_depth}\n")
    print(table(s))
    for route, r in s["routes"].items():
        for b in r["bad"]:
            print(f"  {route}: {b}")
    if args.json:
        Path(args.json).write_text(json.dumps(s, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
