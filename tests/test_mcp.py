"""The LLM tool: ``conceptseg mcp`` driven through the mcp SDK's own stdio client (a real
subprocess speaking MCP over its stdin/stdout), and ``conceptseg tool-schema``."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("mcp")
from jsonschema import Draft202012Validator
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from pycocotools import mask as mask_utils

from conceptseg.checkpoint import load
from conceptseg.cli import main
from conceptseg.serve import tool_engine
from conceptseg.serve.tool_answers import summary
from conceptseg.serve.tool_schema import FORMATS, TOOLS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "conceptseg" / "assets" / "examples"
SCENE = str(EXAMPLES / "scene0.png")
FOUND = json.loads((EXAMPLES / "prompts.json").read_text())["scene0.png"][0]  # "yellow object"
ABSENT = "green object"  # in the shipped model's vocabulary, not in scene0 (presence ~0.05)
WAIT = 180.0  # seconds: the slowest call on a loaded 2-core machine, with room to spare


class McpSession:
    """One ``conceptseg mcp`` subprocess and an SDK client on a private event loop thread;
    :meth:`run` runs ``fn(client)`` there and waits for it, bounded."""

    def __init__(self, *flags: str, errlog: Path):
        self.loop = asyncio.new_event_loop()
        self.flags, self.errlog = flags, errlog
        self.err = open(errlog, "w")  # noqa: SIM115  the server's stderr, closed in close()
        self.ready, self.client, self.error = threading.Event(), None, None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),),
                                       daemon=True)
        self.thread.start()
        if not self.ready.wait(WAIT) or self.error is not None:
            self.close()
            raise RuntimeError(f"conceptseg mcp did not start: {self.error!r}\n{self.log()}")

    async def _main(self):
        self.stop = asyncio.Event()
        params = StdioServerParameters(command=sys.executable,
                                       args=["-m", "conceptseg", "mcp", *self.flags],
                                       env={"PYTHONPATH": str(ROOT)}, cwd=str(ROOT))
        try:
            async with Client(stdio_client(params, errlog=self.err),
                              read_timeout_seconds=WAIT) as client:
                self.client = client
                self.ready.set()
                await self.stop.wait()
        except Exception as e:  # noqa: BLE001  reported by __init__
            self.error = e
            self.ready.set()

    def run(self, fn):
        return asyncio.run_coroutine_threadsafe(fn(self.client), self.loop).result(WAIT)

    def call(self, name: str, args: dict):
        return self.run(lambda c: c.call_tool(name, args))

    def log(self) -> str:
        return self.errlog.read_text() if self.errlog.exists() else ""

    def close(self):
        if self.thread.is_alive() and hasattr(self, "stop"):
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)  # the SDK's stdio client stops (and if need be kills) the server
        self.err.close()


@pytest.fixture(scope="module")
def mcp_session(tmp_path_factory):
    session = McpSession("--max-pixels", "250000", "--max-image-mb", "1",
                         errlog=tmp_path_factory.mktemp("mcp") / "stderr.txt")
    yield session
    session.close()


def _ok(result) -> dict:
    assert not result.is_error, result.content[0].text
    doc = result.structured_content
    assert json.loads(result.content[0].text) == doc  # the same answer as text
    return doc


def _error(result) -> str:
    assert result.is_error, result.structured_content
    return result.content[0].text


def test_mcp_lists_the_two_tools_with_the_one_schema(mcp_session):
    listed = {t.name: t for t in mcp_session.run(lambda c: c.list_tools()).tools}
    assert set(listed) == {"segment_concepts", "refine_instance"}
    for t in TOOLS:
        assert listed[t["name"]].input_schema == t["input_schema"]
        assert listed[t["name"]].output_schema == t["output_schema"]
        assert listed[t["name"]].annotations.read_only_hint is True


def test_mcp_segment_present_and_absent_phrase(mcp_session):
    doc = _ok(mcp_session.call("segment_concepts",
                               {"image_path": SCENE, "phrases": [FOUND, ABSENT]}))
    Draft202012Validator(TOOLS[0]["output_schema"]).validate(doc)
    assert doc["image"]["width"] == doc["image"]["height"] == 448
    assert any("shipped demo model" in n and "sam3.pt" in n for n in doc["notes"])
    found, absent = doc["results"]
    assert found["phrase"] == FOUND and found["present"] is True
    assert found["count"] == found["listed"] == len(found["instances"]) >= 1
    scores = [i["score"] for i in found["instances"]]
    assert scores == sorted(scores, reverse=True) and min(scores) > 0.5
    n = found["count"]
    assert re.fullmatch(rf"{n} instances? of '{FOUND}', scores? [0-9.]+(-[0-9.]+)?",
                        found["summary"]), found["summary"]
    for inst in found["instances"]:
        x0, y0, x1, y1 = inst["box"]
        assert 0 <= x0 < x1 <= 448 and 0 <= y0 < y1 <= 448 and inst["area"] > 0
        (outer, *_rest) = inst["polygons"]  # the largest part, around the instance's box
        xs, ys = [p[0] for p in outer], [p[1] for p in outer]
        assert len(outer) >= 3 and 0 <= min(xs) and max(xs) <= 448 and 0 <= min(ys) \
            and max(ys) <= 448
        ix = max(0, min(x1, max(xs)) - max(x0, min(xs)))
        iy = max(0, min(y1, max(ys)) - max(y0, min(ys)))
        assert ix * iy > 0.5 * (x1 - x0) * (y1 - y0)
    assert absent["phrase"] == ABSENT and absent["present"] is False
    assert absent["count"] == 0 and absent["instances"] == [] and absent["presence"] < 0.5
    assert absent["summary"] == f"no '{ABSENT}' found (presence {absent['presence']:.2f})"


def test_tool_summary_lines():
    assert summary("red car", 3, 3, [0.91, 0.7, 0.62], 0.99, 0.5) == \
        "3 instances of 'red car', scores 0.91-0.62"
    assert summary("red car", 1, 1, [0.91], 0.99, 0.5) == "1 instance of 'red car', score 0.91"
    assert summary("person", 40, 20, [0.95] + [0.6] * 19, 1.0, 0.5) == \
        "40 instances of 'person'; the 20 best listed, scores 0.95-0.60"
    assert summary("zebra", 0, 0, [], 0.03, 0.5) == "no 'zebra' found (presence 0.03)"
    # presence above the threshold but no instance: not "found", and not "absent" either
    line = summary("white star", 0, 0, [], 0.85, 0.5)
    assert line.startswith("no instance of 'white star' scored above the threshold 0.5")
    assert "presence score is 0.85" in line and "lower threshold" in line


def test_mcp_segment_outputs_and_max_instances(mcp_session):
    boxes = _ok(mcp_session.call("segment_concepts", {"image_path": SCENE, "phrases": [FOUND],
                                                      "output": "boxes"}))
    assert boxes["polygon_tolerance"] is None
    everything = boxes["results"][0]
    assert everything["count"] >= 2  # the example has several
    assert all(set(i) == {"id", "score", "box", "area"} for i in everything["instances"])
    rle = _ok(mcp_session.call("segment_concepts", {"image_id": boxes["image"]["id"],
                                                    "phrases": [FOUND], "output": "rle",
                                                    "max_instances": 1}))
    assert rle["image"] == boxes["image"]
    res = rle["results"][0]
    # count is every instance above the threshold; only the best is listed (and decoded)
    assert res["count"] == everything["count"] and res["listed"] == len(res["instances"]) == 1
    assert f"; the 1 best listed, scores {everything['instances'][0]['score']:.2f}" \
        in res["summary"]
    inst = res["instances"][0]
    assert "polygons" not in inst and inst["box"] == everything["instances"][0]["box"]
    assert int(mask_utils.area(dict(inst["rle"], counts=inst["rle"]["counts"].encode()))) \
        == inst["area"]


def test_mcp_bad_inputs_are_tool_errors(mcp_session, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    big = io.BytesIO()
    Image.fromarray(np.zeros((600, 600, 3), np.uint8)).save(big, format="PNG")
    cases = {
        "image not found": {"image_path": str(tmp_path / "missing.png")},
        "is not an image": {"image_path": str(text)},
        "is a directory": {"image_path": str(tmp_path)},
        "not a regular file": {"image_path": "/dev/zero"},
        "not valid base64": {"image_base64": "@@@ not base64 @@@"},
        "above the limit of 250,000 pixels": {
            "image_base64": base64.b64encode(big.getvalue()).decode()},
        "above the limit of 1 MiB": {"image_base64": "A" * (2 << 20)},
        "exactly one of image_path, image_base64, image_id": {},
        "unknown or expired image_id": {"image_id": "0123456789abcdef"},
    }
    for expected, image in cases.items():
        msg = _error(mcp_session.call("segment_concepts", {**image, "phrases": ["red circle"]}))
        assert expected in msg, (expected, msg)
    for phrases, expected in (([], "phrases"), (["x"] * 17, "phrases"), (["   "], "empty"),
                              (["x" * 10_000], "phrases.0")):
        msg = _error(mcp_session.call("segment_concepts",
                                      {"image_path": SCENE, "phrases": phrases}))
        assert expected in msg, (phrases[:1], msg)
    msg = _error(mcp_session.call("segment_concepts", {
        "image_path": SCENE, "phrases": ["red circle"],
        "exemplars": [{"box": [500, 500, 900, 900]}]}))
    assert "lies outside the 448x448 image" in msg
    msg = _error(mcp_session.call("segment_concepts", {"image_path": SCENE, "phrases": ["a"],
                                                       "threshold": 2}))
    assert "threshold" in msg
    # a box partly outside is clipped, not refused; the server is still healthy afterwards;
    # arrays sent JSON-encoded in a string (some clients do) are read as arrays
    doc = _ok(mcp_session.call("segment_concepts", {
        "image_path": SCENE, "phrases": json.dumps([FOUND]),
        "exemplars": [{"box": [-50, -50, 100, 100], "label": "negative"}]}))
    assert [r["phrase"] for r in doc["results"]] == [FOUND]
    msg = _error(mcp_session.call("segment_concepts", {"image_path": SCENE,
                                                       "phrases": "not json"}))
    assert "invalid phrases" in msg


def test_mcp_refine_a_found_instance(mcp_session):
    seg = _ok(mcp_session.call("segment_concepts", {"image_path": SCENE, "phrases": [FOUND]}))
    inst = seg["results"][0]["instances"][0]
    x0, y0, x1, y1 = inst["box"]
    click = [(x0 + x1) / 2, (y0 + y1) / 2]
    doc = _ok(mcp_session.call("refine_instance", {
        "image_id": seg["image"]["id"], "instance": {"phrase": FOUND, "id": 0},
        "points": [click], "labels": [1]}))
    Draft202012Validator(TOOLS[1]["output_schema"]).validate(doc)
    mask = doc["mask"]
    assert mask["area"] > 0 and mask["polygons"] and doc["summary"].startswith("refined mask")
    bx0, by0, bx1, by1 = mask["box"]
    assert bx0 < x1 and x0 < bx1 and by0 < y1 and y0 < by1  # overlaps the instance
    msg = _error(mcp_session.call("refine_instance", {
        "image_id": seg["image"]["id"], "instance": {"phrase": FOUND, "id": 999}}))
    assert "has no instance 999" in msg
    msg = _error(mcp_session.call("refine_instance", {
        "image_id": seg["image"]["id"], "instance": {"phrase": "never asked", "id": 0}}))
    assert "call segment_concepts with that phrase first" in msg
    msg = _error(mcp_session.call("refine_instance", {"image_path": SCENE,
                                                      "points": [[900, 10]]}))
    assert "outside the 448x448 image" in msg


def test_mcp_time_budget_gives_a_tool_error(tmp_path):
    session = McpSession("--timeout", "0.05", errlog=tmp_path / "stderr.txt")
    try:
        msg = _error(session.call("segment_concepts", {"image_path": SCENE,
                                                       "phrases": [FOUND, "a", "b"]}))
        assert "time budget of 0.05 s" in msg
        listed = session.run(lambda c: c.list_tools())  # still answering
        assert len(listed.tools) == 2
    finally:
        session.close()


def test_mcp_command_checks_flags(capsys):
    assert main(["mcp", "--root", "/no/such/dir"]) == 2
    assert "--root" in capsys.readouterr().err
    assert main(["mcp", "--timeout", "0"]) == 2


def test_tool_schema_formats_share_the_parameters(capsys):
    params = {}
    for fmt in FORMATS:
        assert main(["tool-schema", "--format", fmt]) == 0
        tools = json.loads(capsys.readouterr().out)
        for t in tools:
            if fmt == "openai":
                assert t["type"] == "function" and set(t["function"]) == {
                    "name", "description", "parameters"}
                name, schema = t["function"]["name"], t["function"]["parameters"]
            elif fmt == "anthropic":
                assert set(t) == {"name", "description", "input_schema"}
                name, schema = t["name"], t["input_schema"]
            else:
                name, schema = t["name"], t["inputSchema"]
                Draft202012Validator.check_schema(t["outputSchema"])
            Draft202012Validator.check_schema(schema)
            params.setdefault(name, []).append(schema)
    assert set(params) == {"segment_concepts", "refine_instance"}
    for schemas in params.values():
        assert len(schemas) == 3 and schemas[0] == schemas[1] == schemas[2]
    assert main(["tool-schema", "--tool", "refine_instance"]) == 0
    assert [t["function"]["name"] for t in json.loads(capsys.readouterr().out)] == [
        "refine_instance"]
    assert main(["tool-schema", "--tool", "nope"]) == 2



def test_tool_engine_lists_fewer_instances_when_masks_would_not_fit(monkeypatch):
    engine = tool_engine.ToolEngine(load(None, "video"), shipped=True)
    monkeypatch.setattr(tool_engine, "MASK_BUDGET", 4 * 448 * 448 * 2)  # two float masks
    doc = engine.segment({"image_path": SCENE, "phrases": [FOUND], "max_instances": 10,
                          "output": "boxes"}, tool_engine.Deadline(WAIT))
    res = doc["results"][0]
    assert res["listed"] == len(res["instances"]) == 2 and res["count"] > 2
    assert any("at most 2 instances per phrase" in n for n in doc["notes"])
