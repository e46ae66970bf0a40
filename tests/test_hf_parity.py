"""Parity with the transformers port (``transformers.Sam3Model``) and the HF weight layout.

The same weights (ours, converted with ``conceptseg.checkpoint.hf.official_to_hf``) are loaded
into both models and fed the same pixels, tokens and boxes (fp32, CPU). Max abs errors measured on
torch 2.13 CPU / transformers 5.23, RoI-Align via the shim below (torchvision absent):
  test (random, constants randomised): FPN levels 3.0e-7, text features 0;
      text + 2 boxes: logits 1.9e-7, boxes 6e-8, presence 3e-8, masks 2.2e-6, semantic 1.3e-6;
      text only:      logits 1.2e-7, boxes 1.2e-7, presence 6e-8, masks 1.3e-6
  fixture (random): FPN 8.3e-7, text 0; text + boxes: logits 1.8e-7, boxes 1.2e-7,
      presence 3e-8, masks 1.9e-6; text only: logits 1.7e-7, boxes 1.8e-7, masks 1.5e-6
  fixture (official weights): FPN 3.6e-7, text 0; text + boxes: logits 1.9e-7, boxes 1.2e-7,
      presence 2.5e-7, masks 1.4e-6; text only: logits 1.9e-7, boxes 6e-8, masks 1.7e-6
  sam3 (slow, random): FPN 6.6e-7 / 2.1e-6 / 4.5e-6 (4x / 2x / 1x level), text 0
(Text only with no box at all, transformers drops the geometry CLS token: logits then differ
by 0.09 to 0.33, masks by 0.3 to 0.44; hence the padding box.)
transformers' box path calls ``torchvision.ops.roi_align``; without torchvision the full-output
test also runs with our pure-PyTorch ``roi_align`` patched into the port ("shim"), which then
checks everything but RoI-Align itself (tests/test_ops.py checks our roi_align against a
reference implementation of torchvision's semantics).
"""

import importlib
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("transformers", reason="the transformers reference is a test extra")

from conceptseg.build import build_model  # noqa: E402
from conceptseg.checkpoint.hf import (  # noqa: E402
    hf_to_official, looks_like_hf, official_to_hf, rope_buffers)
from conceptseg.config import get_config  # noqa: E402
from conceptseg.model.detector import Sam3Detector  # noqa: E402
from conceptseg.text.tokenizer import ClipTokenizer  # noqa: E402
from tests.hf_reference import (  # noqa: E402
    build_hf_model, hf_config_for, hf_text_features, randomize_constants_)

TOL = 1e-4
PROMPTS = ["a red cube", "two small dogs on the green grass"]
BOXES = torch.tensor([[[0.30, 0.40, 0.20, 0.30], [0.60, 0.55, 0.30, 0.25]],
                      [[0.50, 0.50, 0.40, 0.40], [0.20, 0.70, 0.10, 0.20]]])
LABELS = torch.tensor([[1, 0], [1, 1]])
POINTS = "geometry_encoder.points_"
POS = "backbone.vision_backbone.trunk.pos_embed"


def err(a, b) -> float:
    return (a - b).abs().max().item()


def random_model(name: str, seed: int = 0) -> Sam3Detector:
    m = build_model(name, seed=seed)
    randomize_constants_(m, seed)
    return m.eval()


@pytest.fixture(scope="module", params=["test", "fixture", "fixture-official"])
def pair(request):
    """(config, our model, transformers model with the same weights)."""
    name = request.param
    cfg = get_config(name.split("-")[0])
    if name == "fixture-official":
        sd = request.getfixturevalue("fixture_state_dict")  # skips when absent
        ours = Sam3Detector(cfg)
        ours.load_state_dict(sd)
        ours.eval()
    else:
        ours = random_model(name)
    return cfg, ours, build_hf_model(cfg, ours.state_dict())


def inputs(cfg, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    px = torch.randn(batch, 3, cfg.vision.image_size, cfg.vision.image_size, generator=gen)
    return px, ClipTokenizer()(PROMPTS[:batch])


@torch.no_grad()
def test_vision_and_text(pair):
    cfg, ours, hf = pair
    px, tokens = inputs(cfg)
    levels = ours.encode_image(px).levels
    theirs = hf.get_vision_features(pixel_values=px).fpn_hidden_states
    assert len(theirs) == len(levels) + 1  # transformers also returns the dropped 0.5x level
    for a, b in zip(levels, theirs):
        assert a.shape == b.shape
        assert err(a, b) <= TOL
    feats, valid = hf_text_features(hf, tokens)
    assert err(ours.encode_text(tokens).feats[valid], feats[valid]) <= TOL


@pytest.fixture(params=["torchvision", "shim"])
def roi_align_backend(request, monkeypatch):
    if request.param == "torchvision":
        pytest.importorskip("torchvision", reason="transformers' Sam3 box path calls "
                            "torchvision.ops.roi_align and torchvision is not installed")
    else:
        from conceptseg.ops.roi_align import roi_align

        # the module itself (attribute access on the lazy package gives a placeholder object
        # when torchvision is missing)
        modeling_sam3 = importlib.import_module("transformers.models.sam3.modeling_sam3")
        ops = SimpleNamespace(ops=SimpleNamespace(roi_align=roi_align))
        monkeypatch.setattr(modeling_sam3, "torchvision", ops, raising=False)
    return request.param


def compare_outputs(ours: dict, theirs) -> dict[str, float]:
    return {
        "logits": err(ours["pred_logits"][..., 0], theirs.pred_logits),
        "boxes": err(ours["pred_boxes_xyxy"], theirs.pred_boxes),  # transformers: xyxy
        # transformers clamps the presence logit to +-10; the official model does not
        "presence": err(ours["presence_logit_dec"].clamp(-10, 10), theirs.presence_logits),
        "masks": err(ours["pred_masks"], theirs.pred_masks),
        "semantic": err(ours["semantic_seg"], theirs.semantic_seg),
    }


@torch.no_grad()
def test_full_outputs_text_and_boxes(pair, roi_align_backend):
    cfg, ours, hf = pair
    px, tokens = inputs(cfg)
    mask = (tokens != 0).long()
    out = ours.forward_grounding(ours.encode_image(px), ours.encode_text(tokens), BOXES, LABELS)
    theirs = hf(pixel_values=px, input_ids=tokens, attention_mask=mask, input_boxes=BOXES,
                input_boxes_labels=LABELS)
    errors = compare_outputs(out, theirs)
    assert max(errors.values()) <= TOL, errors


@torch.no_grad()
def test_full_outputs_text_only(pair, roi_align_backend):
    """transformers drops the geometry CLS token when no box is given; one padding box
    (label -10) keeps it, and the padding box itself is masked out."""
    cfg, ours, hf = pair
    px, tokens = inputs(cfg)
    out = ours.forward_grounding(ours.encode_image(px), ours.encode_text(tokens))
    theirs = hf(pixel_values=px, input_ids=tokens, attention_mask=(tokens != 0).long(),
                input_boxes=torch.zeros(2, 1, 4), input_boxes_labels=torch.full((2, 1), -10))
    errors = compare_outputs(out, theirs)
    assert max(errors.values()) <= TOL, errors


# -- weight layout ------------------------------------------------------------------------------
def assert_official_round_trip(sd, cfg):
    """official -> hf -> official: identical, except what transformers cannot store."""
    back = hf_to_official(official_to_hf(sd), cfg)
    assert list(back) == list(Sam3Detector(cfg).state_dict())
    for k, v in sd.items():
        if k.startswith(POINTS):
            assert not back[k].any(), k
        elif k == POS:  # the cls slot (never read) comes back as zeros
            assert torch.equal(back[k][:, 1:], v[:, 1:]) and not back[k][:, :1].any()
        else:
            assert back[k].dtype == v.dtype and torch.equal(back[k], v), k


def assert_hf_round_trip(sd, cfg):
    """hf -> official -> hf is the identity."""
    hf = official_to_hf(sd)
    again = official_to_hf(hf_to_official(hf, cfg))
    assert set(again) == set(hf)
    for k, v in hf.items():
        assert torch.equal(again[k], v), k


def test_round_trips_official_fixture(fixture_state_dict):
    assert_official_round_trip(fixture_state_dict, get_config("fixture"))
    assert_hf_round_trip(fixture_state_dict, get_config("fixture"))


def test_round_trips_random_test_model():
    sd = random_model("test").state_dict()
    assert_official_round_trip(sd, get_config("test"))
    assert_hf_round_trip(sd, get_config("test"))


def test_layout_matches_transformers_keys_and_shapes():
    from transformers import Sam3Model

    cfg = get_config("test")
    with torch.device("meta"):
        ref = Sam3Model(hf_config_for(cfg)).state_dict()
    hf = official_to_hf(random_model("test").state_dict())
    assert set(hf) == set(ref)
    assert all(hf[k].shape == ref[k].shape for k in ref)
    assert looks_like_hf(hf) and not looks_like_hf(Sam3Detector(cfg).state_dict())


def test_rope_buffers_match_the_model():
    for name in ("test", "fixture"):
        bufs = dict(random_model(name).named_buffers())
        for k, v in rope_buffers(get_config(name)).items():
            assert torch.equal(v, bufs[k]), k


def test_whole_checkpoints_select_the_detector():
    cfg = get_config("test")
    sd = random_model("test").state_dict()
    hf = official_to_hf(sd)
    x = torch.zeros(2)
    # whole official sam3.pt: detector.* + tracker.*, and the tracker's FPN copy (sam2_convs)
    full = {"detector." + k: v for k, v in sd.items()}
    full.update({"tracker.maskmem_tpos_enc": x,
                 "detector.backbone.vision_backbone.sam2_convs.0.conv_1x1.weight": x})
    assert official_to_hf(full).keys() == hf.keys()
    # whole facebook/sam3 (Sam3VideoModel): detector_model.* + tracker_model.* + tracker_neck.*
    video = {"detector_model." + k: v for k, v in hf.items()}
    video.update({"tracker_model.no_memory_embedding": x,
                  "tracker_neck.fpn_layers.0.proj1.bias": x})
    assert looks_like_hf(video)
    back = hf_to_official(video, cfg)
    assert all(torch.equal(back[k], v) for k, v in hf_to_official(hf, cfg).items())
    # without a config the tensors transformers does not store are left to the loader
    bare = hf_to_official(hf)
    assert set(back) - set(bare) == {k for k in back if "freqs_cis" in k or k.startswith(POINTS)}
    with pytest.raises(KeyError):
        official_to_hf({**sd, "backbone.unknown.weight": x})
    with pytest.raises(KeyError):
        hf_to_official({**hf, "vision_encoder.unknown.weight": x}, cfg)
    with pytest.raises(ValueError):
        hf_to_official(hf, get_config("fixture"))


def test_hf_layout_saves_with_safetensors(tmp_path):
    from safetensors.torch import load_file, save_file

    hf = official_to_hf(random_model("test").state_dict())
    save_file(hf, tmp_path / "model.safetensors")  # no two tensors share memory
    loaded = load_file(tmp_path / "model.safetensors")
    assert all(torch.equal(loaded[k], v) for k, v in hf.items())


# -- full size ----------------------------------------------------------------------------------
@pytest.mark.slow
@torch.no_grad()
def test_sam3_vision_and_text():
    """Full SAM 3 sizes, random weights. Measured: 7.0 GB peak RSS (transformers' parameters are
    our tensors, shared), 6 min 48 s on 2 busy CPU cores (builds 18 s + 38 s, each ViT ~2 min)."""
    cfg = get_config("sam3")
    ours = random_model("sam3")
    hf = build_hf_model(cfg, ours.state_dict())
    px, tokens = inputs(cfg, batch=1)
    levels = ours.encode_image(px).levels
    theirs = hf.get_vision_features(pixel_values=px).fpn_hidden_states
    for a, b in zip(levels, theirs):
        assert err(a, b) <= TOL
    feats, valid = hf_text_features(hf, tokens)
    assert err(ours.encode_text(tokens).feats[valid], feats[valid]) <= TOL
