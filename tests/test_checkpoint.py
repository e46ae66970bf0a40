"""Checkpoint layouts, strict loading with clear errors, and exact round trips."""

import os

import pytest
import torch

from conceptseg.build import build_model, load
from conceptseg.checkpoint import CheckpointError, convert, save_checkpoint

from .conftest import reference


def _equal_sd(a, b):
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_ours_round_trip(tmp_path, test_model):
    path = save_checkpoint(test_model, tmp_path / "m.safetensors")
    again = load(path)
    assert again.config == test_model.config
    _equal_sd(test_model.state_dict(), again.state_dict())


def test_official_layout_variants_load(tmp_path, fixture_state_dict):
    flat = tmp_path / "flat.pt"
    torch.save(fixture_state_dict, flat)
    nested = tmp_path / "nested.pt"
    torch.save({"model": {f"detector.{k}": v for k, v in fixture_state_dict.items()}}, nested)
    a, b = load(flat), load(nested)
    assert a.config.name == "fixture"
    _equal_sd(a.state_dict(), b.state_dict())
    _equal_sd(a.state_dict(), fixture_state_dict)


def test_official_video_checkpoint_takes_detector_keys():
    sd = torch.load(reference("video_model_state_dict.pt"), weights_only=True)
    assert any(k.startswith("tracker.") for k in sd) and any(".sam2_convs." in k for k in sd)
    model = load(reference("video_model_state_dict.pt"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[f"detector.{k}"]), k


def test_official_ours_official_round_trip(tmp_path, fixture_state_dict):
    src = reference("image_model_state_dict.pt")
    assert convert(src, tmp_path / "ours.safetensors", "ours") == "official"
    assert convert(tmp_path / "ours.safetensors", tmp_path / "back.pt", "official") == "ours"
    back = torch.load(tmp_path / "back.pt", weights_only=True)["model"]
    _equal_sd({k[len("detector."):]: v for k, v in back.items()}, fixture_state_dict)


def test_missing_key_is_named(tmp_path, fixture_state_dict):
    sd = dict(fixture_state_dict)
    del sd["transformer.decoder.query_embed.weight"]
    sd["transformer.decoder.extra.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="query_embed"):
        load(tmp_path / "bad.pt")


def test_mis_shaped_key_is_named(tmp_path, test_model):
    sd = test_model.state_dict()
    sd["dot_prod_scoring.hs_proj.weight"] = torch.zeros(7, 7)
    save_checkpoint(sd, tmp_path / "m.safetensors", config=test_model.config)
    with pytest.raises(CheckpointError, match="mis-shaped: dot_prod_scoring.hs_proj.weight"):
        load(tmp_path / "m.safetensors")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_checkpoint(tmp_path, test_model, suffix):
    path = tmp_path / f"m{suffix}"
    if suffix == ".pt":
        torch.save(test_model.state_dict(), path)
    else:
        save_checkpoint(test_model, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load(path)


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "notes.pt"
    p.write_text("hello, this is not a checkpoint at all\n" * 10)
    with pytest.raises(CheckpointError):
        load(p)


def test_checkpoint_of_another_model(tmp_path):
    torch.save({"encoder.layer.0.weight": torch.zeros(4, 4), "head.bias": torch.zeros(4)},
               tmp_path / "resnet.pt")
    with pytest.raises(CheckpointError, match="not a SAM 3"):
        load(tmp_path / "resnet.pt")


def test_save_is_atomic(tmp_path, test_model, monkeypatch):
    """A crash while writing leaves neither a partial file nor a temp file behind."""
    import safetensors.torch as st

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(st, "save_file", boom)
    with pytest.raises(RuntimeError):
        save_checkpoint(test_model, tmp_path / "m.safetensors")
    assert os.listdir(tmp_path) == []


def test_unused_tensors_do_not_change_outputs(test_model):
    """points_* projections, convs.3 and text_projection are in the checkpoint only."""
    m = build_model("test", seed=0)
    x = torch.randn(1, 3, 56, 56)
    tok = torch.randint(1, 1000, (1, 32))
    with torch.no_grad():
        a = m(x, tok)["pred_logits"]
        for name, p in m.named_parameters():
            if "points_" in name or "convs.3" in name or "text_projection" in name:
                p.add_(1.0)
        b = m(x, tok)["pred_logits"]
    assert torch.equal(a, b)


def test_hf_layout_loads_through_load(tmp_path, fixture_state_dict):
    """The HF layout (no points_* / RoPE buffers) loads through load() with identical outputs;
    the tensors HF does not store come back as zeros / recomputed."""
    src = reference("image_model_state_dict.pt")
    assert convert(src, tmp_path / "hf.safetensors", "hf") == "official"
    model = load(tmp_path / "hf.safetensors")
    assert model.config.name == "fixture"
    for k, v in model.state_dict().items():
        if "points_" in k:
            assert not v.any()
        elif k.endswith("pos_embed"):
            assert torch.equal(v[:, 1:], fixture_state_dict[k][:, 1:])  # cls slot not stored
        else:
            assert torch.equal(v, fixture_state_dict[k]), k
    assert convert(tmp_path / "hf.safetensors", tmp_path / "hf2.safetensors", "hf") == "hf"
    from safetensors.torch import load_file
    a, b = load_file(tmp_path / "hf.safetensors"), load_file(tmp_path / "hf2.safetensors")
    _equal_sd(a, b)


def test_convert_video_checkpoint_keeps_tracker(tmp_path):
    from conceptseg.build import load_video_model
    from conceptseg.cli import main

    src = reference("video_model_state_dict.pt")
    assert main(["convert", str(src), str(tmp_path / "v.safetensors"), "--to", "ours"]) == 0
    assert main(["convert", str(tmp_path / "v.safetensors"), str(tmp_path / "v.pt"), "--to", "official"]) == 0
    back = torch.load(tmp_path / "v.pt", weights_only=True)
    back = back.get("model", back)
    orig = torch.load(src, weights_only=True)
    assert set(back) == set(orig)
    for k in orig:
        assert torch.equal(back[k], orig[k]), k
    assert load_video_model(tmp_path / "v.safetensors").tracker is not None


def test_safetensors_whose_header_length_looks_like_a_pickle(tmp_path):
    # a safetensors file starts with its header's length (u64, little endian); when the low
    # byte is 0x80 the file also starts like a legacy pickle: it must still load as safetensors
    from safetensors.torch import save_file

    from conceptseg.checkpoint.formats import read_raw

    sd = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    for pad in range(300):
        path = tmp_path / "x.safetensors"
        save_file(sd, path, metadata={"pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a 0x80 first byte")
    raw, meta, _ = read_raw(path)
    assert torch.equal(raw["w"], sd["w"]) and meta["pad"] == "x" * pad
