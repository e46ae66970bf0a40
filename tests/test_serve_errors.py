"""``conceptseg serve`` refuses bad input with a 4xx and the contract's JSON error body, never a
traceback; limits (413 by header before decoding, 429 + Retry-After, 504, 401), session expiry,
CORS. One server subprocess with small limits and an API key; the queue and timeout also
in-process."""

from __future__ import annotations

import io
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from conceptseg.cli import build_parser
from conceptseg.errors import ServeError
from conceptseg.inference.results import Prediction
from conceptseg.serve.service import Job, Service
from conceptseg.serve.sessions import ImageEntry

from .serve_helpers import EXAMPLES, ServerProcess

KEY = "s3cret-key"
TTL = 2.0
ORIGIN = "http://annotator.example"


@pytest.fixture(scope="module")
def server():
    with ServerProcess("--api-key", KEY, "--queue-depth", "1", "--session-ttl", str(TTL),
                       "--max-upload-mb", "1", "--cors", ORIGIN, "--max-sessions", "2") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60.0,
                      headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (its pixel data is a few bytes)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def noise_png(seed: int, size: int = 96) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def scene() -> bytes:
    return (EXAMPLES / "scene0.png").read_bytes()


def check_error(r: httpx.Response, status: int, code: str | None = None) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert "Traceback" not in r.text and "\n" not in body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]["message"]


def seg(client, data: bytes, **form):
    form.setdefault("text", "red object")
    return client.post("/v1/segment", files={"image": ("x.png", data, "image/png")}, data=form)


# -- the bad-input table ---------------------------------------------------------------------
TRUNCATED = scene()[:2000]
BAD_SEGMENTS = [  # (name, image bytes, form, status, code, words in the message)
    ("corrupt", b"this is not an image at all" * 10, {}, 422, "invalid_input", "decode"),
    ("truncated", TRUNCATED, {}, 422, "invalid_input", "truncated"),
    ("gigantic header", png_header(50_000, 50_000), {}, 413, "too_large", "pixels"),
    ("empty file", b"", {}, 422, None, ""),
    ("empty prompt", None, {"text": "   "}, 422, "invalid_input", "empty"),
    ("10k prompt", None, {"text": "a" * 10_000}, 422, "invalid_input", "500"),
    ("box outside", None, {"exemplar": "900,900,1000,1000"}, 422, "invalid_input", "outside"),
    ("bad box", None, {"exemplar": "1,2,3"}, 422, "invalid_input", "x0,y0,x1,y1"),
    ("bad label", None, {"exemplar": "1,2,30,40:maybe"}, 422, "invalid_input", "label"),
    ("bad format", None, {"format": "jpeg"}, 422, "invalid_input", "format"),
    ("threshold > 1", None, {"threshold": "1.5"}, 422, "invalid_input", "[0, 1]"),
    ("threshold < 0", None, {"threshold": "-0.1"}, 422, "invalid_input", "[0, 1]"),
    ("threshold nan", None, {"threshold": "nan"}, 422, "invalid_input", "[0, 1]"),
    ("threshold text", None, {"threshold": "high"}, 422, "invalid_request", "threshold"),
    ("max_instances < 0", None, {"max_instances": "-1"}, 422, "invalid_input", "max_instances"),
]


@pytest.mark.parametrize("name,data,form,status,code,words", BAD_SEGMENTS,
                         ids=[b[0] for b in BAD_SEGMENTS])
def test_bad_segment_input(client, name, data, form, status, code, words):
    t = time.monotonic()
    msg = check_error(seg(client, scene() if data is None else data, **form), status, code)
    assert words in msg
    assert time.monotonic() - t < 5  # refused at once (the gigantic one is never decoded)


def test_upload_bytes_limit(client):
    check_error(seg(client, b"\0" * (2 * 2 ** 20)), 413, "too_large")

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b" " * 65536

    r = client.post("/v1/segment/batch", content=chunks(),
                    headers={"content-type": "application/json"})
    check_error(r, 413, "too_large")


def test_bad_json_bodies(client):
    iid = client.post("/v1/images", files={"image": ("s.png", scene(), "image/png")}
                      ).json()["image_id"]
    url = f"/v1/images/{iid}"
    check_error(client.post(url + "/segment", content=b"{not json",
                            headers={"content-type": "application/json"}), 400, "malformed_json")
    check_error(client.post(url + "/segment", json={"text": ["x"], "colour": "red"}), 422,
                "invalid_request")
    check_error(client.post(url + "/segment", json={"text": "not a list"}), 422, "invalid_request")
    check_error(client.post(url + "/segment", json={"text": []}), 422, "invalid_input")
    check_error(client.post(url + "/refine", json={"points": [[5000, 5]], "labels": [1]}), 422,
                "invalid_input")
    check_error(client.post(url + "/refine", json={"instance": {"text": "never asked", "id": 0}}),
                422, "invalid_input")
    check_error(client.post(url + "/refine", json={}), 422, "invalid_input")
    # a request cannot name a server path: only uploads and ids
    check_error(client.post("/v1/segment/batch", json={"images": [{"path": "/etc/passwd"}],
                                                       "text": ["x"]}), 422, "invalid_request")
    r = client.post("/v1/segment/batch", json={"images": [{"data": "%%% not base64"}],
                                               "text": ["x"]})
    assert r.status_code == 200 and r.json()["results"][0]["error"]["code"] == "invalid_input"


def test_unknown_and_expired_sessions(client):
    check_error(client.post("/v1/images/0123abcd/segment", json={"text": ["x"]}), 404,
                "unknown_session")
    check_error(client.post("/v1/images/..%2F..%2Fetc/segment", json={"text": ["x"]}), 404)
    check_error(client.delete("/v1/videos/nope"), 404, "unknown_session")
    check_error(client.get("/v1/videos/nope/frames/0"), 404, "unknown_session")
    iid = client.post("/v1/images", files={"image": ("n.png", noise_png(99), "image/png")}
                      ).json()["image_id"]
    assert client.post(f"/v1/images/{iid}/segment", json={"text": ["x"]}).status_code == 200
    sid = client.post("/v1/videos", files={"video": ("c.mp4", (EXAMPLES / "clip.mp4")
                                                     .read_bytes(), "video/mp4")}
                      ).json()["session_id"]
    time.sleep(TTL + 1.5)
    msg = check_error(client.post(f"/v1/images/{iid}/segment", json={"text": ["x"]}), 404,
                      "unknown_session")
    assert "expired" in msg
    check_error(client.post(f"/v1/videos/{sid}/prompts", json={"text": "red object"}), 404,
                "unknown_session")
    assert 'conceptseg_sessions{kind="video"} 0.0' in client.get("/metrics").text


def test_bad_video_input(client):
    up = client.post("/v1/videos", files={"video": ("clip.mp4", b"\0 not a video" * 99,
                                                    "video/mp4")})
    check_error(up, 422, "invalid_input")
    check_error(client.post("/v1/videos", files={"video": ("clip.gif", b"GIF89a", "image/gif")}),
                422, "invalid_input")
    v = client.post("/v1/videos", files={"video": ("c.mp4", (EXAMPLES / "clip.mp4").read_bytes(),
                                                   "video/mp4")}).json()
    sid, n = v["session_id"], v["num_frames"]
    check_error(client.get(f"/v1/videos/{sid}/frames/{n}"), 422, "invalid_input")
    check_error(client.post(f"/v1/videos/{sid}/prompts", json={"frame": n, "text": "red"}), 422)
    check_error(client.post(f"/v1/videos/{sid}/prompts", json={"frame": 0}), 422)
    check_error(client.post(f"/v1/videos/{sid}/prompts", json={"frame": 0, "text": ""}), 422)
    check_error(client.post(f"/v1/videos/{sid}/prompts",
                            json={"frame": 0, "points": [[-50, 3]]}), 422, "invalid_input")
    check_error(client.post(f"/v1/videos/{sid}/propagate", json={"direction": "sideways"}),
                422, "invalid_request")
    check_error(client.delete(f"/v1/videos/{sid}/objects/12345"), 422, "invalid_input")
    # the uploaded file's name is never used as a path on the server
    other = client.post("/v1/videos", files={"video": ("../../x/evil.mp4", (EXAMPLES / "clip.mp4")
                                                       .read_bytes(), "video/mp4")})
    assert other.status_code == 200, other.text
    full = client.post("/v1/videos", files={"video": ("c.mp4", (EXAMPLES / "clip.mp4")
                                                      .read_bytes(), "video/mp4")})
    check_error(full, 429, "too_many_sessions")
    assert int(full.headers["retry-after"]) >= 1
    for s in (sid, other.json()["session_id"]):
        assert client.delete(f"/v1/videos/{s}").status_code == 200


def test_api_key(server):
    url = server.url
    assert httpx.get(url + "/v1/health").status_code == 200  # open
    check_error(httpx.get(url + "/v1/model"), 401, "unauthorized")
    check_error(httpx.get(url + "/v1/model", headers={"Authorization": "Bearer wrong"}), 401)
    check_error(httpx.post(url + "/v1/segment", files={"image": ("x.png", scene())},
                           data={"text": "x"}), 401)
    assert httpx.get(url + "/v1/model", headers={"X-API-Key": KEY}).status_code == 200
    assert httpx.get(url + "/v1/model", headers={"Authorization": f"Bearer {KEY}"}
                     ).status_code == 200


def test_cors_only_for_the_named_origin(server):
    pre = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    r = httpx.options(server.url + "/v1/segment", headers=pre)
    assert r.headers.get("access-control-allow-origin") == ORIGIN
    r = httpx.options(server.url + "/v1/segment", headers={**pre, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_queue_full_gives_429_with_retry_after(client):
    def upload(i):
        return client.post("/v1/images", files={"image": (f"{i}.png", noise_png(i), "image/png")})

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(upload, range(12)))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {200, 429} and statuses.count(200) >= 1 and 429 in statuses
    for a in answers:
        if a.status_code == 429:
            check_error(a, 429, "queue_full")
            assert int(a.headers["retry-after"]) >= 1
    assert 'status="429"' in client.get("/metrics").text


def test_serve_binds_loopback_by_default(monkeypatch):
    monkeypatch.delenv("CONCEPTSEG_API_KEY", raising=False)
    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.cors == [] and args.api_key is None
    monkeypatch.setenv("CONCEPTSEG_API_KEY", "from-env")  # keeps the key out of `ps`
    assert build_parser().parse_args(["serve"]).api_key == "from-env"


@pytest.mark.parametrize("flags,words", [
    (["--queue-depth", "0"], "--queue-depth"), (["--max-prompt-chars", "900"], "at most 500"),
    (["--timeout", "nan"], "--timeout"), (["--port", "70000"], "--port"),
    (["--random-weights", "nope"], "--random-weights"),
    (["--random-weights", "test", "--checkpoint", "x.pt"], "not both")])
def test_serve_flags_checked_before_the_model(capsys, flags, words):
    from conceptseg.cli import main

    assert main(["serve", *flags]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_service_timeout_cancels_and_depth_limit():
    import asyncio

    ran = []
    service = Service(torch.nn.Linear(1, 1), timeout=0.2, queue_depth=1)
    try:
        async def main():
            slow = asyncio.ensure_future(service.run(lambda: time.sleep(0.6)))
            await asyncio.sleep(0.05)
            queued = asyncio.ensure_future(service.run(lambda: ran.append(1)))
            await asyncio.sleep(0.05)
            with pytest.raises(ServeError) as full:
                service.queue.submit(Job(lambda: None))
            assert full.value.status == 429 and full.value.retry_after >= 1
            for fut in (slow, queued):
                with pytest.raises(ServeError) as late:
                    await fut
                assert late.value.status == 504
            await asyncio.sleep(0.6)
            assert await service.run(lambda: 7) == 7

        asyncio.run(main())
        assert ran == []  # the timed-out job still waiting was cancelled, never run
    finally:
        service.close()


class RecordingPredictor:
    """Stands in for an ImagePredictor: records each predict call's phrases."""

    def __init__(self):
        self.calls = []

    def predict(self, text, exemplars=(), threshold=0.5, max_instances=None):
        self.calls.append((list(text), threshold, max_instances))
        return [Prediction(t, torch.zeros(0, 8, 8, dtype=torch.bool), torch.zeros(0, 4),
                           torch.zeros(0), 0.1, (8, 8)) for t in text]


def test_service_batches_phrases_waiting_on_the_same_image():
    import asyncio

    service = Service(torch.nn.Linear(1, 1), timeout=5, queue_depth=8)
    entry = ImageEntry("abc", "abc", RecordingPredictor(), 8, 8)
    try:
        async def main():
            busy = asyncio.ensure_future(service.run(lambda: time.sleep(0.3)))
            await asyncio.sleep(0.05)  # the worker is busy: the next jobs wait together
            asks = [(["a"], 0.5, 3), (["b", "a"], 0.5, 5), (["x"], 0.7, None), (["c"], 0.5, 1)]
            got = await asyncio.gather(*[service.segment(entry, t, [], th, m)
                                         for t, th, m in asks])
            await busy
            return asks, got

        asks, got = asyncio.run(main())
        for (texts, _, _), preds in zip(asks, got):
            assert [p.text for p in preds] == texts
        assert entry.predictor.calls == [(["a", "b", "c"], 0.5, 5), (["x"], 0.7, None)]
        assert service.queue.batched == 2
    finally:
        service.close()


def test_unexpected_error_is_a_json_500_without_traceback():
    from fastapi.testclient import TestClient

    from conceptseg.build import build_video_model
    from conceptseg.serve.app import create_app
    from conceptseg.serve.context import build_context
    from conceptseg.serve.limits import Limits

    ctx = build_context(build_video_model("test", seed=0), Limits(), model_info={})

    async def broken(data):
        raise RuntimeError("secret internal detail")

    ctx.encode = broken
    with TestClient(create_app(ctx), raise_server_exceptions=False) as c:
        r = c.post("/v1/images", files={"image": ("x.png", scene(), "image/png")})
        msg = check_error(r, 500, "internal_error")
        assert "secret" not in msg and "secret" not in r.text
        check_error(c.get("/v1/nothing-here"), 404, "not_found")
        check_error(c.put("/v1/health"), 405, "method_not_allowed")
    assert not ctx.tmp_root.exists()  # the server's clip directory is removed at shutdown
