"""``conceptseg serve`` over real HTTP: a server subprocess on a free loopback port, the shipped
model and examples. Segment in every mask format, batch, image sessions with refine, a video
session streamed as NDJSON, metrics, the OpenAPI schema; plus ImagePredictor's max_instances."""

from __future__ import annotations

import base64
import io
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from .serve_helpers import EXAMPLES, ServerProcess

ABSENT = "xylophone"  # a phrase the shipped model finds in none of the examples
PRESENT = "yellow object"


@pytest.fixture(scope="module")
def server():
    with ServerProcess() as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


def scene(i: int = 0) -> bytes:
    return (EXAMPLES / f"scene{i}.png").read_bytes()


def segment(client, data: bytes, **form):
    fields = {k: (v if isinstance(v, list) else str(v)) for k, v in form.items()}
    fields.setdefault("text", [PRESENT])
    return client.post("/v1/segment", files={"image": ("x.png", data, "image/png")},
                       data=fields)


def test_health_model_and_openapi(client):
    assert client.get("/v1/health").json()["status"] == "ok"
    info = client.get("/v1/model").json()
    assert info["config"] == "tiny" and info["has_tracker"] and info["shipped"]
    assert info["parameters"] > 1_000_000 and info["layout"] == "ours"
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/v1/segment", "/v1/segment/batch", "/v1/images", "/v1/images/{image_id}/refine",
              "/v1/videos/{sid}/propagate", "/v1/videos/{sid}/frames/{t}"):
        assert p in paths
    assert client.get("/docs").status_code == 404  # its page would load scripts from a CDN


@pytest.mark.parametrize("fmt", ["rle", "polygon", "png", "none"])
def test_segment_formats(client, fmt):
    r = segment(client, scene(0), text=[PRESENT, ABSENT], format=fmt)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == {"width": 448, "height": 448, "sha256": body["image"]["sha256"]}
    found, absent = body["results"]
    assert found["text"] == PRESENT and not found["no_match"] and found["count"] >= 1
    assert absent["text"] == ABSENT and absent["no_match"] and absent["instances"] == []
    scores = [i["score"] for i in found["instances"]]
    assert scores == sorted(scores, reverse=True)
    assert [i["id"] for i in found["instances"]] == list(range(found["count"]))
    for inst in found["instances"]:
        x0, y0, x1, y1 = inst["box_xyxy"]
        assert 0 <= x0 < x1 <= 448 and 0 <= y0 < y1 <= 448 and 0.5 < inst["score"] <= 1
        m = inst["mask"]
        if fmt == "rle":
            dec = mask_utils.decode(m)
        elif fmt == "polygon":
            dec = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(m, 448, 448)))
        elif fmt == "png":
            dec = np.array(Image.open(io.BytesIO(base64.b64decode(m))))
        else:
            assert m is None
            continue
        assert dec.shape == (448, 448)
        if fmt != "polygon":  # polygons are simplified within 1 px: areas differ slightly
            assert int(dec.astype(bool).sum()) == inst["area"]
        else:
            assert abs(int(dec.sum()) - inst["area"]) < 0.2 * inst["area"] + 50


def test_segment_max_instances_and_exemplars(client):
    full = segment(client, scene(0)).json()["results"][0]
    one = segment(client, scene(0), max_instances=1).json()["results"][0]
    assert full["count"] >= 2 and one["count"] == 1
    assert one["instances"][0]["score"] == pytest.approx(full["instances"][0]["score"])
    box = full["instances"][0]["box_xyxy"]
    # a box partly outside the image is clipped, not refused; exemplars alone work too
    spec = f"{box[0] - 40},{box[1]},{box[2]},{box[3] + 900}:pos"
    r = segment(client, scene(0), text=[], exemplar=[spec])
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["text"] is None


def test_batch_one_corrupt_image(client):
    good = base64.b64encode(scene(1)).decode()
    bad = base64.b64encode(scene(1)[:300]).decode()  # a truncated PNG
    r = client.post("/v1/segment/batch", json={
        "images": [{"data": good}, {"data": bad}, {"image_id": "0123456789abcdef"}],
        "text": ["purple object", ABSENT], "format": "none"})
    assert r.status_code == 200, r.text
    a, b, c = r.json()["results"]
    assert a["index"] == 0 and len(a["results"]) == 2 and a["results"][0]["count"] >= 1
    assert a["results"][1]["no_match"]
    assert b["index"] == 1 and b["error"]["code"] == "invalid_input"
    assert "decode" in b["error"]["message"]
    assert c["error"]["code"] == "unknown_session"


def test_image_session_segment_refine_delete(client):
    up = client.post("/v1/images", files={"image": ("s.png", scene(2), "image/png")}).json()
    iid = up["image_id"]
    assert (up["width"], up["height"]) == (448, 448)
    again = client.post("/v1/images", files={"image": ("t.png", scene(2), "image/png")}).json()
    assert again == {**up, "cached": True}
    seg = client.post(f"/v1/images/{iid}/segment", json={"text": ["blue object"],
                                                         "format": "rle"})
    assert seg.status_code == 200, seg.text
    res = seg.json()["results"][0]
    assert res["count"] >= 1
    # refine instance 0 found by text, with one positive click inside its box
    x0, y0, x1, y1 = res["instances"][0]["box_xyxy"]
    ref = client.post(f"/v1/images/{iid}/refine", json={
        "instance": {"text": "blue object", "id": 0},
        "points": [[(x0 + x1) / 2, (y0 + y1) / 2]], "labels": [1], "format": "rle"})
    assert ref.status_code == 200, ref.text
    body = ref.json()
    assert len(body["masks"]) == 1 and body["masks"][0]["area"] > 0
    assert mask_utils.decode(body["masks"][0]["mask"]).shape == (448, 448)
    # feed the previous refine back with a box (partly outside: clipped) and multimask
    ref2 = client.post(f"/v1/images/{iid}/refine", json={
        "mask_input_id": body["refine_id"], "box": [x0 - 10, y0, x1 + 1000, y1],
        "multimask": True, "format": "polygon"})
    assert ref2.status_code == 200, ref2.text
    assert len(ref2.json()["masks"]) == 3
    assert client.delete(f"/v1/images/{iid}").json() == {"deleted": True}
    gone = client.post(f"/v1/images/{iid}/segment", json={"text": ["blue object"]})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_session"


def test_concurrent_phrases_on_one_image_are_answered_separately(client):
    iid = client.post("/v1/images", files={"image": ("s.png", scene(1), "image/png")}
                      ).json()["image_id"]
    phrases = ["purple object", "green object", ABSENT, "striped object"] * 2

    def ask(t):
        return client.post(f"/v1/images/{iid}/segment", json={"text": [t], "format": "none"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, phrases))
    for t, a in zip(phrases, answers):
        assert a.status_code == 200 and a.json()["results"][0]["text"] == t
    assert answers[2].json()["results"][0]["no_match"]


def test_video_session_stream(client):
    up = client.post("/v1/videos", files={"video": ("clip.mp4", (EXAMPLES / "clip.mp4")
                                                    .read_bytes(), "video/mp4")})
    assert up.status_code == 200, up.text
    v = up.json()
    sid, n = v["session_id"], v["num_frames"]
    assert n > 1 and v["width"] > 0 and v["fps"] > 0
    p = client.post(f"/v1/videos/{sid}/prompts", json={"frame": 0, "text": "red object"})
    assert p.status_code == 200, p.text
    objects = p.json()["objects"]
    assert objects and all(o["phrase"] == "red object" for o in objects)
    lines = []
    with client.stream("POST", f"/v1/videos/{sid}/propagate",
                       json={"direction": "forward", "format": "rle", "max_frames": 12}) as s:
        assert s.status_code == 200
        assert s.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in s.iter_lines() if line.strip()]
    frames, last = lines[:-1], lines[-1]
    assert last == {"done": True, "frames": 12} and n > 12
    assert sorted(f["frame"] for f in frames) == list(range(12))
    for f in frames:
        for o in f["objects"]:
            assert mask_utils.decode(o["mask"]).shape == (v["height"], v["width"])
    jpeg = client.get(f"/v1/videos/{sid}/frames/1")
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).size == (v["width"], v["height"])
    oid = max(o["obj_id"] for f in frames for o in f["objects"])  # tracked to the end
    assert client.delete(f"/v1/videos/{sid}/objects/{oid}").json() == {"removed": oid}
    again = client.post(f"/v1/videos/{sid}/propagate", json={"max_frames": 2})
    ids = {o["obj_id"] for line in again.text.splitlines() if line.strip()
           for o in json.loads(line).get("objects", [])}
    assert oid not in ids
    assert client.delete(f"/v1/videos/{sid}").json() == {"closed": True}
    gone = client.post(f"/v1/videos/{sid}/prompts", json={"frame": 0, "text": "red object"})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "unknown_session"


def test_metrics(client):
    client.get("/v1/health")
    text = client.get("/metrics").text
    assert 'conceptseg_requests_total{method="POST",route="/v1/segment",status="200"}' in text
    assert 'conceptseg_request_seconds_bucket{le="0.005",method="GET",route="/v1/health"}' in text
    for name in ("conceptseg_queue_depth", 'conceptseg_sessions{kind="image"}',
                 'conceptseg_sessions{kind="video"}', "conceptseg_encodings_cached"):
        assert name in text


def test_predictor_max_instances_keeps_the_best():
    from conceptseg.checkpoint import load
    from conceptseg.inference.image import ImagePredictor

    p = ImagePredictor(load(None, "image")).set_image(EXAMPLES / "scene0.png")
    full = p.predict(text=PRESENT)
    two = p.predict(text=PRESENT, max_instances=2)
    assert len(full) > 2 and len(two) == 2
    assert torch.equal(two.scores, full.scores[:2]) and torch.equal(two.masks, full.masks[:2])
    assert len(p.predict(text=PRESENT, max_instances=0)) == 0


def test_video_phrases_replace(client):
    """replace=true starts over with the new phrase; replace=false adds the phrase's objects
    beside the ones tracked, ids unique across phrases, each object carrying its phrase."""
    sid = client.post("/v1/videos", files={"video": ("c.webm", (EXAMPLES / "clip.mp4")
                                                     .read_bytes(), "video/mp4")}
                      ).json()["session_id"]
    try:
        red = client.post(f"/v1/videos/{sid}/prompts", json={"text": "red object"}).json()
        blue = client.post(f"/v1/videos/{sid}/prompts", json={"text": "blue object"}).json()
        assert {o["phrase"] for o in blue["objects"]} == {"blue object"}
        added = client.post(f"/v1/videos/{sid}/prompts",
                            json={"text": "red object", "replace": False})
        assert added.status_code == 200, added.text
        phrases = {o["phrase"] for o in added.json()["objects"]}
        assert phrases == {"red object", "blue object"}
        ids = [o["obj_id"] for o in added.json()["objects"]]
        assert len(ids) == len(set(ids))
        assert red["objects"]
        # exemplars (a box partly outside the frame is clipped), then a click on frame 2
        box = red["objects"][0]["box_xyxy"]
        ex = client.post(f"/v1/videos/{sid}/prompts", json={
            "frame": 0, "exemplars": [[box[0] - 30, box[1] - 30, box[2], box[3], "pos"]]})
        assert ex.status_code == 200, ex.text
        click = client.post(f"/v1/videos/{sid}/prompts", json={
            "frame": 2, "points": [[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]],
            "labels": [1]})
        assert click.status_code == 200, click.text
        assert click.json()["frame"] == 2
        assert any(o["phrase"] is None for o in click.json()["objects"])
    finally:
        client.delete(f"/v1/videos/{sid}")


def test_cors_off_by_default(server):
    r = httpx.options(server.url + "/v1/segment", headers={
        "Origin": "http://elsewhere.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers
