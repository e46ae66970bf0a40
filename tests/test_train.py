"""Training: matcher, losses, overfitting a few synthetic scenes, resume, COCO input checks,
fine-tuning the official-layout fixture. Everything runs on CPU in well under a minute."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conceptseg.errors import InputError
from conceptseg.train.losses import LossWeights, SetCriterion, sigmoid_focal
from conceptseg.train.matcher import (
    assign,
    focal_class_cost,
    hungarian_match,
    match_batch,
    match_one_to_many,
)

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "official_small" / "image_model_state_dict.pt"


# -- matcher ------------------------------------------------------------------------------------
def test_assign_hand_made_costs():
    cost = torch.tensor([[1.0, 5.0], [4.0, 0.5], [3.0, 3.0]])
    q, t = assign(cost)
    assert q.tolist() == [0, 1] and t.tolist() == [0, 1]
    # the greedy choice (query 0 for target 1, cost 0) is not optimal here
    cost = torch.tensor([[2.0, 0.0], [1.0, 10.0]])
    q, t = assign(cost)
    assert q.tolist() == [1, 0] and t.tolist() == [0, 1]
    # NaN / inf never crash and are avoided
    cost = torch.tensor([[float("nan"), 1.0], [2.0, float("inf")], [0.5, 0.7]])
    q, t = assign(cost)
    assert sorted(zip(t.tolist(), q.tolist())) == [(0, 2), (1, 0)]


def test_hungarian_prefers_overlapping_confident_queries():
    tgt = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.1, 0.3]])
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.7, 0.6, 0.1, 0.3], [0.3, 0.31, 0.2, 0.2],
                          [0.3, 0.3, 0.2, 0.2]])
    logits = torch.tensor([0.0, 0.0, 5.0, -5.0])  # query 2 is confident, query 3 exact but not
    q, t = hungarian_match(logits, boxes, tgt)
    assert dict(zip(t.tolist(), q.tolist())) == {0: 2, 1: 1}
    # a focal cost prefers confident queries
    c = focal_class_cost(torch.tensor([-3.0, 0.0, 3.0]))
    assert c[0] > c[1] > c[2]
    # negatives (no targets) match nothing
    q, t = hungarian_match(logits, boxes, torch.zeros(0, 4))
    assert q.numel() == 0 and t.numel() == 0
    rows = match_batch(logits[None, :, None].repeat(2, 1, 1), boxes[None].repeat(2, 1, 1),
                       [tgt, torch.zeros(0, 4)])
    assert rows[0][0].numel() == 2 and rows[1][0].numel() == 0


def test_one_to_many_gives_each_target_k_queries():
    boxes = torch.rand(10, 4) * 0.5 + 0.25
    tgt = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.1, 0.3]])
    (q, t), = match_one_to_many(torch.zeros(1, 10, 1), boxes[None], [tgt], k=3)
    assert len(set(q.tolist())) == 6 and sorted(t.tolist()) == [0, 0, 0, 1, 1, 1]
    (q, t), = match_one_to_many(torch.zeros(1, 10, 1), boxes[None], [torch.zeros(0, 4)], k=3)
    assert q.numel() == 0


# -- losses -------------------------------------------------------------------------------------
def _perfect_outputs(Q=6, h=16, L=2):
    """Two rows: one with two instances, one negative; outputs that predict them exactly."""
    m0 = torch.zeros(h, h)
    m0[2:6, 3:9] = 1
    m1 = torch.zeros(h, h)
    m1[10:14, 8:12] = 1
    boxes_t = torch.tensor([[6 / h, 4 / h, 6 / h, 4 / h], [10 / h, 12 / h, 4 / h, 4 / h]])
    targets = {"boxes": [boxes_t, torch.zeros(0, 4)], "masks": [torch.stack([m0, m1]), torch.zeros(0, h, h)],
               "presence": torch.tensor([1.0, 0.0])}
    logits = torch.full((2, Q, 1), -30.0)
    logits[0, 1, 0] = logits[0, 4, 0] = 30.0
    boxes = torch.rand(2, Q, 4) * 0.1 + 0.45
    boxes[0, 1], boxes[0, 4] = boxes_t[0], boxes_t[1]
    masks = torch.full((2, Q, h, h), -40.0)
    masks[0, 1] = m0 * 80 - 40
    masks[0, 4] = m1 * 80 - 40
    sem = torch.full((2, 1, h, h), -40.0)
    sem[0, 0] = torch.maximum(m0, m1) * 80 - 40
    out = {"pred_logits": logits, "pred_boxes": boxes, "presence_logit_dec": torch.tensor([[30.0], [-30.0]]),
           "aux_logits": logits[None].repeat(L, 1, 1, 1), "aux_boxes": boxes[None].repeat(L, 1, 1, 1),
           "aux_presence": torch.tensor([[30.0], [-30.0]])[None].repeat(L, 1, 1),
           "pred_masks": masks, "semantic_seg": sem}
    return out, targets


def test_perfect_prediction_has_near_zero_loss():
    out, targets = _perfect_outputs()
    loss, comps = SetCriterion(LossWeights(o2m_k=0))(out, targets)
    assert float(loss) < 1e-3, comps
    assert comps["matched_iou"] > 0.999
    # corrupting any part raises the loss clearly
    for key, fn in [("presence_logit_dec", lambda t: -t), ("pred_masks", lambda t: -t),
                    ("pred_boxes", lambda t: t.flip(-1))]:
        bad = dict(out)
        bad[key] = fn(out[key])
        if key == "presence_logit_dec":
            bad["aux_presence"] = -out["aux_presence"]
        if key == "pred_boxes":
            bad["aux_boxes"] = bad["pred_boxes"][None].repeat(2, 1, 1, 1)
        assert float(SetCriterion()(bad, targets)[0]) > 1.0, key


def test_focal_matches_reference_values():
    x = torch.tensor([0.0, 2.0, -2.0])
    t = torch.tensor([1.0, 1.0, 0.0])
    p = torch.sigmoid(x)
    ref = torch.stack([0.25 * (1 - p[0]) ** 2 * -torch.log(p[0]), 0.25 * (1 - p[1]) ** 2 * -torch.log(p[1]),
                       0.75 * p[2] ** 2 * -torch.log(1 - p[2])])
    assert torch.allclose(sigmoid_focal(x, t), ref, atol=1e-6)


# -- overfitting --------------------------------------------------------------------------------
def test_overfit_few_scenes_learns_boxes_and_presence():
    from conceptseg.build import build_model

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is faster, and robust on a busy machine
    try:
        _overfit(build_model("test", seed=0).train())
    finally:
        torch.set_num_threads(threads)


def _overfit(model):
    from conceptseg.data.synthetic import SceneConfig, SyntheticConceptDataset
    from conceptseg.train.data import Collator, mask_resolution
    from conceptseg.train.config import TrainConfig
    from conceptseg.train.optim import build_optimizer

    S = model.config.vision.image_size
    ds = SyntheticConceptDataset(4, seed=3, image_size=S, phrases_per_image=4,
                                 cfg=SceneConfig(min_objects=2, max_objects=3, max_attributes=1,
                                                 negative_mode="easy"))
    batch = Collator(mask_resolution(model.config))([ds[i] for i in range(4)])
    crit = SetCriterion(LossWeights(mask_bce=1.0, mask_dice=1.0))
    opt = build_optimizer(model, TrainConfig(lr=3e-3, weight_decay=0.0))
    history = []
    for step in range(100):
        out = model(batch["images"], batch["tokens"], image_index=batch["image_index"])
        loss, comps = crit(out, batch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history.append(comps)
    first, last = history[0], history[-1]
    assert last["loss"] < 0.3 * first["loss"], (first["loss"], last["loss"])
    assert last["matched_iou"] > 0.5 > first["matched_iou"]
    model.eval()
    with torch.no_grad():
        out = model(batch["images"], batch["tokens"], image_index=batch["image_index"])
    pres = out["presence_logit_dec"][:, 0].sigmoid()
    pos, neg = pres[batch["presence"] > 0.5], pres[batch["presence"] < 0.5]
    assert pos.min() > neg.max(), (pos, neg)  # the phrase decides presence on the training set


# -- resume -------------------------------------------------------------------------------------
class _Kill(Exception):
    pass


def _kill_after(k):
    def hook(step, comps):
        if step == k:
            raise _Kill
    return {"step_end": hook}


def _weights(run: Path):
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_kill_gives_identical_weights(tmp_path):
    from conceptseg.train.detect import TrainConfig, train

    def cfg(out):
        return TrainConfig(out=str(out), steps=5, batch_images=2, phrases_per_image=2,
                           checkpoint_every=2, log_every=1, progress=False, lr=1e-3, warmup=2,
                           threads=1,
                           dac=True, dn=True, loss=LossWeights(o2m_k=2),
                           curriculum="0:1:easy,3:4:mixed")
    quiet = lambda *a: None  # noqa: E731
    train(cfg(tmp_path / "a"), model_config="test", log=quiet)
    with pytest.raises(_Kill):
        train(cfg(tmp_path / "b"), model_config="test", hooks=_kill_after(3), log=quiet)
    state = torch.load(tmp_path / "b" / "train_state.pt", weights_only=False)
    assert state["step"] == 2  # the last checkpoint before the kill
    res = train(cfg(tmp_path / "b"), model_config="test", resume=True, log=quiet)
    assert res["step"] == 5
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    lines = [json.loads(s) for s in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 5 and "loss" in lines[-1]


def test_pretrain_stage_runs_and_resumes(tmp_path):
    from conceptseg.train.detect import TrainConfig, train

    c = TrainConfig(out=str(tmp_path / "p"), stage="pretrain", steps=3, batch_images=2,
                    checkpoint_every=1, progress=False, lr=1e-3, threads=1)
    with pytest.raises(_Kill):
        train(c, model_config="test", hooks=_kill_after(2), log=lambda *a: None)
    res = train(c, model_config="test", resume=True, log=lambda *a: None)
    assert res["step"] == 3 and np.isfinite(res["loss"]) and 0 <= res["top1"] <= 1
    state = torch.load(tmp_path / "p" / "train_state.pt", weights_only=False)
    assert state["head"] is not None


# -- COCO input ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    from conceptseg.data.synthetic import write_coco

    d = tmp_path_factory.mktemp("coco")
    write_coco(d, 3, seed=5, image_size=112, progress=False)
    return d


def _variant(coco_dir: Path, tmp_path: Path, edit) -> Path:
    d = tmp_path / "data"
    shutil.copytree(coco_dir, d)
    doc = json.loads((d / "annotations.json").read_text())
    edit(doc, d)
    (d / "annotations.json").write_text(json.dumps(doc))
    return d / "annotations.json"


def _first_pos(doc):
    return doc["annotations"][0]


BAD = {
    "missing image": (lambda doc, d: (d / doc["images"][0]["file_name"]).unlink(), "not found"),
    "empty segmentation": (lambda doc, d: _first_pos(doc).update(segmentation=[]), "empty segmentation"),
    "invalid RLE": (lambda doc, d: _first_pos(doc)["segmentation"].update(counts="0" + "\x7f" * 3),
                    "invalid RLE"),
    "RLE size": (lambda doc, d: _first_pos(doc)["segmentation"].update(size=[10, 10]), "invalid RLE"),
    "invalid polygon": (lambda doc, d: _first_pos(doc).update(segmentation=[[1.0, 2.0, 3.0]]),
                        "invalid polygon"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_coco_input_strict_and_skip(coco_dir, tmp_path, name):
    from conceptseg.train.coco import CocoConceptDataset

    edit, words = BAD[name]
    path = _variant(coco_dir, tmp_path, edit)
    with pytest.raises(InputError) as e:
        CocoConceptDataset(path, image_size=112)
    msg = str(e.value)
    assert words in msg and ("image id" in msg or "annotation id" in msg) and "\n" not in msg
    ds = CocoConceptDataset(path, image_size=112, skip_bad=True)
    assert ds.skipped >= 1 and len(ds) >= 1
    item = ds.item(0, np.random.default_rng(0))
    assert item["image"].shape == (3, 112, 112) and len(item["queries"]) == 4


def test_empty_annotation_list_is_an_error_in_both_modes(coco_dir, tmp_path):
    from conceptseg.train.coco import CocoConceptDataset

    path = _variant(coco_dir, tmp_path, lambda doc, d: doc.update(annotations=[]))
    for skip in (False, True):
        with pytest.raises(InputError, match="annotations"):
            CocoConceptDataset(path, image_size=112, skip_bad=skip)


def test_cli_bad_coco_one_line_error_and_skip_bad(coco_dir, tmp_path, capsys):
    from conceptseg.cli import main

    path = _variant(coco_dir, tmp_path, BAD["invalid polygon"][0])
    args = ["train", "--config", "test", "--data", str(path), "--out", str(tmp_path / "run"),
            "--steps", "1", "--batch-images", "2", "--no-progress", "--threads", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("conceptseg train: error:") and "invalid polygon" in err and "\n" not in err
    assert main(args + ["--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 bad entry" in out and "trained to step 1" in out


def test_plain_coco_categories_as_phrases(tmp_path):
    from PIL import Image

    from conceptseg.train.coco import CocoConceptDataset

    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "a.png")
    doc = {"images": [{"id": 1, "file_name": "a.png", "height": 40, "width": 60}],
           "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [10, 10, 20, 10],
                            "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]]}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    ds = CocoConceptDataset(tmp_path / "a.json", image_size=56, mask_hw=(14, 14), phrases_per_image=2)
    item = ds.item(0, np.random.default_rng(0))
    by = {q["text"]: q for q in item["queries"]}
    assert set(by) == {"cat", "dog"} and by["cat"]["presence"] == 0 and by["dog"]["presence"] == 1
    assert torch.allclose(by["dog"]["boxes"][0], torch.tensor([20 / 60, 15 / 40, 20 / 60, 10 / 40]))
    assert by["dog"]["masks"].shape == (1, 14, 14) and by["dog"]["masks"].sum() > 0


# -- fine-tuning the official fixture on COCO data, killed mid-epoch ----------------------------
def test_finetune_official_fixture_resumes_without_losing_an_epoch(coco_dir, tmp_path):
    if not FIXTURE.exists():
        pytest.skip(f"official fixture {FIXTURE} is not available")
    from conceptseg.cli import main
    from conceptseg.train.detect import TrainConfig, train

    ann = str(coco_dir / "annotations.json")

    def cfg(out):  # 3 images / 2 per batch = 2 steps per epoch; 2 epochs; no step checkpoints
        return TrainConfig(out=str(out), data=ann, epochs=2, batch_images=2, phrases_per_image=2,
                           checkpoint_every=1000, progress=False, lr=1e-4, warmup=1,
                           freeze=("vision",), threads=1)
    quiet = lambda *a: None  # noqa: E731
    train(cfg(tmp_path / "a"), model_config="fixture", init=str(FIXTURE), log=quiet)
    with pytest.raises(_Kill):  # killed in the middle of epoch 2 (after its first step)
        train(cfg(tmp_path / "b"), model_config="fixture", init=str(FIXTURE), hooks=_kill_after(3),
              log=quiet)
    state = torch.load(tmp_path / "b" / "train_state.pt", weights_only=False)
    assert state["step"] == 2 and state["data_position"] == {"epoch": 1, "batch_in_epoch": 0}
    # the CLI resumes it
    assert main(["train", "--config", "fixture", "--init", str(FIXTURE), "--data", ann,
                 "--epochs", "2", "--batch-images", "2", "--phrases-per-image", "2",
                 "--checkpoint-every", "1000", "--lr", "1e-4", "--warmup", "1", "--freeze", "vision",
                 "--threads", "1", "--out", str(tmp_path / "b"), "--resume", "--no-progress"]) == 0
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    frozen = [k for k in _weights(tmp_path / "a") if k.startswith("backbone.vision_backbone.trunk.")]
    from conceptseg.build import load

    ref = load(FIXTURE).state_dict()
    assert all(torch.equal(_weights(tmp_path / "a")[k], ref[k]) for k in frozen)


def test_dac_forward_keeps_one_to_one_outputs():
    from conceptseg.build import build_model
    from conceptseg.train.dac import train_forward

    model = build_model("test", seed=1).eval()
    images = torch.randn(2, 3, 56, 56)
    tokens = torch.randint(1, 400, (3, 32))
    tokens[:, 6:] = 0
    index = torch.tensor([0, 1, 1])
    dn_refs = torch.rand(3, 5, 4) * 0.5 + 0.25
    with torch.no_grad():
        ref = model(images, tokens, image_index=index)
        got = train_forward(model, images, tokens, index, dac=True)
        got_dn = train_forward(model, images, tokens, index, dac=True, dn_refs=dn_refs)
        only_dn = train_forward(model, images, tokens, index, dn_refs=dn_refs)
    for k in ("pred_logits", "pred_boxes", "presence_logit_dec", "pred_masks", "semantic_seg",
              "aux_logits", "aux_boxes", "aux_presence"):
        for out in (got, got_dn, only_dn):
            assert torch.allclose(ref[k], out[k], atol=1e-5), k
    assert got["o2m"]["aux_logits"].shape == ref["aux_logits"].shape
    assert not torch.allclose(got["o2m"]["aux_logits"], ref["aux_logits"])  # no self-attention
    assert torch.allclose(got["o2m"]["aux_logits"], got_dn["o2m"]["aux_logits"], atol=1e-5)
    assert got_dn["dn"]["aux_logits"].shape == (2, 3, 5, 1) and "o2m" not in only_dn
    assert torch.allclose(got_dn["dn"]["aux_logits"], only_dn["dn"]["aux_logits"], atol=1e-5)


def test_recognition_targets_cover_every_instance():
    from conceptseg.train.data import Collator, SyntheticStream

    stream = SyntheticStream(56, 2, 3, seed=4)
    items = stream.batch(0)
    batch = Collator((14, 14))(items)
    for r, b in enumerate(batch["image_index"].tolist()):
        n = items[b]["all_boxes"].shape[0]
        assert batch["dn_valid"][r].sum() == n
        # the row's positives are exactly its target boxes
        pos = batch["dn_boxes"][r][batch["dn_labels"][r] > 0.5]
        assert torch.allclose(pos.sort(0).values, batch["boxes"][r].sort(0).values)


def test_exemplar_rows_target_the_boxed_kind():
    from conceptseg.train.data import VISUAL_PROMPT, Collator, SyntheticStream

    s = SyntheticStream(96, 4, 4, seed=3, exemplar_prob=1.0)
    items = s.batch(0)
    seen_visual = seen_text = False
    for it in items:
        for q in it["queries"]:
            ex = q["exemplar"]
            # the exemplar is one of the row's targets
            assert torch.isclose(q["boxes"], ex).all(1).any()
            if q["text"] == VISUAL_PROMPT:
                seen_visual = True
                assert q["presence"] == 1 and len(q["instance_ids"]) >= 1
            else:
                seen_text = True
    assert seen_visual and seen_text
    b = Collator((24, 24))(items)
    assert b["exemplar_boxes"].shape == (len(b["texts"]), 1, 4)
    assert not b["exemplar_padding"].any()


def test_attribute_aux_loss_and_exemplars_train(tmp_path):
    from conceptseg.train.detect import TrainConfig, train

    c = TrainConfig(out=str(tmp_path / "x"), steps=2, batch_images=2, phrases_per_image=2,
                    log_every=1, progress=False, threads=1, attr_aux=1.0, exemplars=0.5)
    res = train(c, model_config="test", log=lambda *a: None)
    assert res["step"] == 2 and np.isfinite(res["loss"])
    state = torch.load(tmp_path / "x" / "train_state.pt", weights_only=False)
    assert set(state["head"]) >= {"attr.shape.weight", "attr.color.weight"}


def test_token_owners_and_attribute_loss():
    from conceptseg.data.phrases import ATTRIBUTES, VALUES
    from conceptseg.data.synthetic import make_scene
    from conceptseg.train.data import attribute_indices, token_owners
    from conceptseg.train.pretrain import AttributeHead

    scene = make_scene(5, 224)
    own = token_owners(scene.instances, 28)
    assert own.shape == (28, 28) and (own >= 0).any() and (own == -1).any()
    for k, inst in enumerate(scene.instances):  # a token owned by k lies mostly inside k
        ys, xs = np.nonzero(own.numpy() == k)
        for y, x in zip(ys, xs):
            assert inst.mask[y * 8:(y + 1) * 8, x * 8:(x + 1) * 8].mean() >= 0.5
    attrs = attribute_indices(scene.instances)
    assert attrs.shape == (len(scene.instances), len(ATTRIBUTES))
    head = AttributeHead(16)
    feats = torch.randn(1, 16, 28, 28, requires_grad=True)
    loss, acc = head.token_loss(feats, own[None], attrs)
    assert np.isfinite(float(loss)) and set(acc) == {f"tok_acc_{a}" for a in ATTRIBUTES}
    loss.backward()
    assert feats.grad[0, :, own == -1].abs().sum() == 0  # unowned tokens get no gradient
    # a head that reads the answer off the features gets every token right
    with torch.no_grad():
        for a in ATTRIBUTES:
            head.attr[a].weight.zero_()
            head.attr[a].bias.zero_()
    onehot = torch.zeros(1, 16, 28, 28)
    j = ATTRIBUTES.index("color")
    for k in range(len(scene.instances)):
        onehot[0, attrs[k, j], own == k] = 1.0
    with torch.no_grad():
        head.attr["color"].weight[:, :len(VALUES["color"])] = torch.eye(len(VALUES["color"]))
    _, acc = head.token_loss(onehot, own[None], attrs)
    assert acc["tok_acc_color"] == 1.0


def test_stop_at_then_resume_equals_one_run(tmp_path):
    from conceptseg.train.detect import TrainConfig, train

    def cfg(out, stop=None):
        return TrainConfig(out=str(out), steps=4, batch_images=2, phrases_per_image=2,
                           checkpoint_every=10, log_every=1, progress=False, lr=1e-3, warmup=1,
                           threads=1, stop_at=stop)
    quiet = lambda *a: None  # noqa: E731
    train(cfg(tmp_path / "a"), model_config="test", log=quiet)
    assert train(cfg(tmp_path / "b", stop=2), model_config="test", log=quiet)["step"] == 2
    assert train(cfg(tmp_path / "b"), model_config="test", resume=True, log=quiet)["step"] == 4
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))


def test_match_batch_one_host_copy_equals_row_by_row():
    torch.manual_seed(3)
    B, Q = 5, 12
    logits, boxes = torch.randn(B, Q, 1), torch.rand(B, Q, 4) * 0.5 + 0.25
    tgts = [torch.rand(n, 4) * 0.5 + 0.25 for n in (3, 0, 1, 5, 2)]
    rows = match_batch(logits, boxes, tgts)
    for b in range(B):
        qi, ti = hungarian_match(logits[b], boxes[b], tgts[b])
        assert torch.equal(rows[b][0], qi) and torch.equal(rows[b][1], ti)
    o2m = match_one_to_many(logits, boxes, tgts, k=3)
    assert [len(q) for q, _ in o2m] == [9, 0, 3, 10, 6]


def test_workers_give_the_same_run_and_time_limit_checkpoints(tmp_path):
    from conceptseg.train.detect import TrainConfig, train

    def cfg(out, **kw):
        return TrainConfig(out=str(out), steps=3, batch_images=2, phrases_per_image=2, dn=True,
                           exemplars=0.5, checkpoint_every=10, log_every=1, progress=False,
                           lr=1e-3, warmup=1, threads=1, **kw)
    quiet = lambda *a: None  # noqa: E731
    train(cfg(tmp_path / "a"), model_config="test", log=quiet)
    train(cfg(tmp_path / "b", workers=2), model_config="test", log=quiet)
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    said = []
    res = train(cfg(tmp_path / "c", time_limit=0.0), model_config="test", log=said.append)
    assert res["step"] == 1 and "time limit" in said[-1]
    assert (tmp_path / "c" / "train_state.pt").exists()


def test_learning_curve_plot_on_images_axis(tmp_path):
    pytest.importorskip("matplotlib")
    from conceptseg.train.plot import plot_runs, read_metrics

    for name, batch in (("a", 4), ("b", 32)):
        run = tmp_path / name
        run.mkdir()
        (run / "train_config.json").write_text(json.dumps({"batch_images": batch}))
        lines = [{"step": s, "loss": 10.0 / s, "matched_iou": 0.5, "pres_gap": 1.0}
                 for s in range(10, 110, 10)]
        lines.insert(5, {"eval": {"cgF1": 1.0, "presence_auc": 0.7},
                         "eval_test": {"cgF1": 0.5}, "step": 50})
        (run / "metrics.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n{\"torn")
    train_lines, evals = read_metrics(tmp_path / "a")
    assert len(train_lines) == 10 and len(evals) == 1
    out = plot_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "c.png", x="images")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
