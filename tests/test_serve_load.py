"""Load: 200 concurrent clients against a ``conceptseg serve`` subprocess with a small queue
(bench/serve.py's driver): every answer is 2xx or 429 in the contract's shape, no request is
lost, the server survives and its peak RSS stays under :data:`RSS_BOUND_MB`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

BENCH = Path(__file__).resolve().parents[1] / "bench" / "serve.py"
CLIENTS = 200
SECONDS = 15.0
QUEUE_DEPTH = 4
# The shipped model idles at ~0.6 GiB; 200 clients with a queue of 4 hold at most 4 + 1 jobs
# of a 448 px image each, and at most 200 request bodies of ~0.2 MB: 1.5 GiB leaves room for
# the allocator, never for a leak or an unbounded queue.
RSS_BOUND_MB = 1536


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_serve", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the file runs
    spec.loader.exec_module(mod)
    return mod


def test_serve_load_200_clients_every_answer_2xx_or_429(tmp_path):
    bench = _bench_module()
    s = bench.bench(CLIENTS, SECONDS, list(bench.ROUTES),
                    ["--queue-depth", str(QUEUE_DEPTH), "--timeout", "30"], timeout=60.0,
                    log=tmp_path / "server.log")
    report = bench.table(s) + "\n" + (tmp_path / "server.log").read_text()[-2000:]
    assert s["server_alive"], report
    for route, r in s["routes"].items():
        assert r["lost"] == 0, (route, report)  # every request got exactly one answer
        assert r["other"] == 0 and r["malformed"] == 0, (route, r["bad"], report)
        assert r["requests"] == r["2xx"] + r["429"], (route, report)
        assert r["2xx"] > 0, (route, report)  # each route was served, not only refused
    assert s["requests"] >= CLIENTS, report  # every client got at least one answer
    assert sum(r["429"] for r in s["routes"].values()) > 0, report  # the queue did fill
    assert s["server_peak_rss_mb"] < RSS_BOUND_MB, report
