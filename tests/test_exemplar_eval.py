"""The exemplar curve (issue 13 item 5): `conceptseg eval --exemplars --cross-image` counts the
instances each setting is scored on as the protocol says, matches one-to-one at IoU 0.5, and
with the shipped model exemplars from other scenes find the boxed kind."""

import json

import torch

import conceptseg as cs
from conceptseg.cli import main
from conceptseg.data.splits import EXEMPLAR_TEST_SEED
from conceptseg.data.synthetic import SceneConfig, derive_seed, make_scene, mask_to_rle
from conceptseg.evaluate.exemplar import (_kept, _kind, _match_rles, curve_table, evaluate_exemplar_curve,
                                          exemplar_groups)
from conceptseg.inference.results import Prediction


def _prediction(masks, scores):
    m = torch.as_tensor(masks)
    return Prediction(text=None, masks=m, boxes=torch.zeros(len(m), 4), scores=torch.tensor(scores),
                      presence=1.0, image_size=tuple(m.shape[1:]))


def test_matching_is_one_to_one_above_the_threshold():
    scene = make_scene(derive_seed(EXEMPLAR_TEST_SEED, 0), 96, SceneConfig(split="test"))
    masks = torch.stack([torch.as_tensor(i.mask) for i in scene.instances])
    gt = [mask_to_rle(i.mask) for i in scene.instances]
    n = len(gt)
    assert _match_rles(_kept(_prediction(masks, [0.9] * n), 0.5), gt) == n
    assert _match_rles(_kept(_prediction(masks, [0.4] * n), 0.5), gt) == 0
    twice = torch.cat([masks[:1], masks[:1]])
    assert _match_rles(_kept(_prediction(twice, [0.9, 0.8]), 0.5), gt) == 1  # a duplicate counts once
    assert _match_rles(_kept(_prediction(masks[:0], []), 0.5), gt) == 0


def _expected_counts(num, size):
    scenes = [make_scene(derive_seed(EXEMPLAR_TEST_SEED, i), size, SceneConfig(split="test"))
              for i in range(num)]
    holders: dict[tuple, set[int]] = {}
    for s, sc in enumerate(scenes):
        for inst in sc.instances:
            holders.setdefault(_kind(inst), set()).add(s)
    same, other = {k: 0 for k in (1, 2, 3)}, {k: 0 for k in (1, 2, 3)}
    for s, sc in enumerate(scenes):
        for ids, _ in exemplar_groups(sc):
            elsewhere = len(holders[_kind(sc.instances[ids[0]])] - {s})
            for k in (1, 2, 3):
                same[k] += max(len(ids) - k, 0)
                other[k] += len(ids) if elsewhere >= k else 0
    return same, other


def test_eval_cross_image_cli(tmp_path, test_model, monkeypatch, capsys):
    import conceptseg.build as build

    monkeypatch.setattr(build, "load", lambda *a, **k: test_model)
    assert main(["eval", "--exemplars", "--cross-image", "--model", "x", "--data", "synthetic:6",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "exemplar_curve.json").read_text())
    same, other = _expected_counts(6, test_model.config.vision.image_size)
    assert sum(other.values()) > 0
    for setting, want in (("same_image", same), ("other_images", other)):
        for k in (1, 2, 3):
            cell = res["curve"][setting][str(k)]
            assert cell["exemplars"]["instances"] == cell["text"]["instances"] == want[k]
            for c in cell.values():
                assert c["recall"] is None if not want[k] else 0 <= c["recall"] <= 1
    table = (tmp_path / "exemplar_curve.md").read_text()
    assert table.strip() == curve_table(res) and table.count("\n") == 5
    assert "| exemplars | same image" in out and (tmp_path / "exemplar_curve.png").stat().st_size > 0


def test_cross_image_needs_exemplars(tmp_path, capsys):
    assert main(["eval", "--cross-image", "--model", "", "--data", "synthetic:2",
                 "--out", str(tmp_path)]) == 2
    assert "add --exemplars" in capsys.readouterr().err


def test_shipped_model_exemplars_from_other_scenes_find_the_kind(tmp_path):
    """The issue's target (>= 75 % of the boxed kind's instances at IoU 0.5 from another
    image's box), on a small held-out split; the README's numbers come from synthetic:40."""
    res = evaluate_exemplar_curve(cs.load(), 20, tmp_path, progress=False)
    one = res["curve"]["other_images"]["1"]["exemplars"]
    assert one["instances"] == 41 and one["recall"] >= 0.75
