"""The serving layer: ``conceptseg serve`` (FastAPI over one model holder) and the pieces the
MCP tool shares with it.

- :mod:`.results` — one :class:`~conceptseg.inference.results.Prediction` → the API's
  PhraseResult in any mask format (no web dependency: the MCP tool imports it).
- :mod:`.schemas` — the request/response models of docs/API.md (pydantic).
- :mod:`.limits` — upload bytes and image pixels, checked before decoding.
- :mod:`.sessions` — image sessions (content hash, encode once, bounded LRU) and video
  sessions (server-owned temp clip, idle TTL, max sessions).
- :mod:`.service` — the one model holder: a bounded queue and one worker thread.
- :mod:`.metrics` — Prometheus counters, histograms and gauges.
- :mod:`.app` — the FastAPI routes, thin; everything above is injected.

This package imports no web framework at import time: only :mod:`.app` does.
"""
