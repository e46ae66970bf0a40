"""The second (foreign) renderer: deterministic, its size rule and phrase forms, valid COCO,
independent of the first engine's drawing code, refused by training, `eval --data foreign:N`."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from conceptseg.cli import main
from conceptseg.data.foreign import FORMS, refuse_training, render_foreign, write_foreign_coco
from conceptseg.data.foreign.layout import LARGE_FACTOR, MAX_SIDE_SHARE, SMALL_BASE, SMALL_SPREAD
from conceptseg.data.phrases import parse_phrase
from conceptseg.errors import InputError

FIRST_ENGINE = ("conceptseg.data.shapes", "conceptseg.data.scene", "conceptseg.data.scene_sampling",
                "conceptseg.data.synthetic", "conceptseg.data.synthetic_video",
                "conceptseg.data.coco_export", "conceptseg.data.concept_dataset",
                "conceptseg.data.randomize")


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("foreign")
    write_foreign_coco(d, 4, seed=11, progress=False)
    return d


def test_foreign_renderer_is_deterministic(tmp_path, coco_dir):
    a, b = render_foreign(5), render_foreign(5)
    assert a.image.tobytes() == b.image.tobytes()
    assert [d.phrase for d in a.datapoints] == [d.phrase for d in b.datapoints]
    assert all((x.mask == y.mask).all() for x, y in zip(a.objects, b.objects))
    assert render_foreign(6).image.tobytes() != a.image.tobytes()
    write_foreign_coco(tmp_path, 4, seed=11, progress=False)
    assert (tmp_path / "annotations.json").read_bytes() == (coco_dir / "annotations.json").read_bytes()
    assert (tmp_path / "images" / "000003.png").read_bytes() == (coco_dir / "images" / "000003.png").read_bytes()


def _matches(phrase: str, attrs: dict) -> bool:
    return all(attrs[a] == v for a, v in parse_phrase(phrase).items())


def test_foreign_sizes_and_phrase_forms():
    for seed in range(10):
        s = render_foreign(seed)
        H, W = s.image.shape[:2]
        assert 320 <= W <= 640 and 240 <= H <= 480
        side = min(H, W)
        small = [o.diameter for o in s.objects if o.attributes["size"] == "small"]
        large = [o.diameter for o in s.objects if o.attributes["size"] == "large"]
        assert small and large, "every image shows both sizes"
        assert min(large) >= 1.6 * max(small) - 1e-6, "large is relative to the image's small ones"
        assert SMALL_BASE[0] * side - 1e-6 <= min(small) and max(small) <= SMALL_BASE[1] * SMALL_SPREAD * side
        assert max(large) <= MAX_SIDE_SHARE * side + 1e-6 and LARGE_FACTOR[0] > SMALL_SPREAD
        attrs = [o.attributes for o in s.objects]
        forms = {}
        for dp in s.datapoints:
            named = set(parse_phrase(dp.phrase))
            assert named == set(FORMS[dp.form]), (dp.form, dp.phrase)
            assert dp.phrase.endswith(" object") == ("shape" not in named)
            want = tuple(i for i, a in enumerate(attrs) if _matches(dp.phrase, a))
            assert dp.instance_ids == want, "positives list every match; negatives match none"
            forms.setdefault(dp.form, []).append(bool(dp.instance_ids))
        assert set(forms) == set(FORMS) and all(True in v for v in forms.values())
        for o in s.objects:
            assert o.mask.sum() >= 12 and o.visible_fraction >= 0.55 - 1e-6


def test_foreign_coco_is_valid(coco_dir):
    path = coco_dir / "annotations.json"
    doc = json.loads(path.read_text())
    assert doc["info"]["never_train"] is True
    assert {e["phrase_form"] for e in doc["images"]} == set(FORMS)
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == len(doc["images"])
    for ann in doc["annotations"]:
        m = mask_util.decode(ann["segmentation"]).astype(bool)
        ys, xs = np.nonzero(m)
        x, y, w, h = ann["bbox"]
        assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert ann["area"] == m.sum()
        img = coco.imgs[ann["image_id"]]
        assert m.shape == (img["height"], img["width"])


def test_foreign_does_not_import_the_first_engine():
    root = Path(__file__).resolve().parents[1] / "conceptseg" / "data" / "foreign"
    for f in root.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):  # resolve the relative import to a module name
                base = "conceptseg.data.foreign".split(".")[: 3 - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else []))
                names = [f"{mod}.{a.name}" for a in node.names] + [mod]
                assert not set(names) & set(FIRST_ENGINE), f"{f.name} imports {mod}"
            elif isinstance(node, ast.Import):
                assert not {a.name for a in node.names} & set(FIRST_ENGINE)
    code = ("import sys, conceptseg.data.foreign; "
            f"print([m for m in {FIRST_ENGINE!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_training_refuses_foreign_data(coco_dir):
    from conceptseg.train.coco import CocoConceptDataset

    with pytest.raises(InputError, match="never_train"):
        CocoConceptDataset(coco_dir / "annotations.json", image_size=64)
    refuse_training({"info": {}}, "x.json")  # other files pass


def test_eval_foreign_end_to_end(tmp_path, test_model, monkeypatch, capsys):
    from conceptseg import build

    monkeypatch.setattr(build, "load", lambda *a, **k: test_model)
    out = tmp_path / "ev"
    assert main(["eval", "--model", "", "--data", "foreign:4", "--out", str(out), "--no-coco"]) == 0
    assert "cgF1" in capsys.readouterr().out
    gt = out / "foreign_test_4" / "annotations.json"
    assert json.loads((out / "report.json").read_text())["counts"]["num_datapoints"] == \
        len(json.loads(gt.read_text())["images"])
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from phrase_forms import phrase_form_table

    rows = phrase_form_table(gt, out / "predictions.json")
    assert [r["form"] for r in rows] == list(FORMS) and sum(r["pairs"] for r in rows) == \
        len(json.loads(gt.read_text())["images"])
    assert main(["eval", "--gt", str(gt), "--pred", str(out / "predictions.json"), "--out",
                 str(tmp_path / "again"), "--no-coco"]) == 0
    assert json.loads((tmp_path / "again" / "report.json").read_text())["cgF1"] == \
        json.loads((out / "report.json").read_text())["cgF1"]
    assert main(["eval", "--model", "", "--data", "foreign:0", "--out", str(tmp_path / "z")]) == 2
