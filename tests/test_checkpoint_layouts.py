"""checkpoint/: one load(path, kind=...), configs read off custom sizes, format sniffing by the
safetensors header, calibration and trackers kept through conversion, clean errors."""

import dataclasses
import json

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

import conceptseg as cs
from conceptseg.build import build_model, build_video_model, save_video_checkpoint
from conceptseg.checkpoint import CheckpointError, convert, describe, load, save, save_checkpoint
from conceptseg.checkpoint.formats import HF_META_PREFIX, PT_META_KEY
from conceptseg.cli import main
from conceptseg.config import get_config
from conceptseg.errors import InputError
from conceptseg.model.video_model import tracker_config_for
from conceptseg.tracker.config import get_tracker_config


def _custom_config(vision_too: bool):
    """The test preset with other sizes everywhere that no preset has."""
    cfg = get_config("test")
    cfg = dataclasses.replace(
        cfg, name="mine", num_queries=12, decoder_layers=3, encoder_layers=2, ffn_dim=96,
        dot_mlp_hidden=48, geometry_layers=2, roi_size=5,
        text=dataclasses.replace(cfg.text, layers=2, mlp_ratio=3.0, projection_dim=24))
    if vision_too:  # only the official layout's RoPE tables show these
        cfg = dataclasses.replace(cfg, vision=dataclasses.replace(
            cfg.vision, depth=3, global_blocks=(2,), image_size=84, mlp_ratio=3.0))
    return cfg


def _outputs(model, side):
    torch.manual_seed(1)
    x, tok = torch.randn(1, 3, side, side), torch.randint(1, 1000, (1, 32))
    with torch.no_grad():
        return model(x, tok)


def _same_outputs(a, b, side):
    """Equal weights, equal outputs (up to 1e-5: a tensor's memory alignment can change the
    order of a reduction, as for any reloaded model)."""
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(v, sb[k]) for k, v in sa.items() if "points_" not in k
               and not k.endswith("pos_embed"))
    oa, ob = _outputs(a, side), _outputs(b, side)
    for k, v in oa.items():
        if torch.is_tensor(v) and v.is_floating_point():
            torch.testing.assert_close(v, ob[k], rtol=0, atol=1e-5, msg=k)


def _strip_our_metadata(src, dst):
    """A copy of an official .pt / HF safetensors file without the configs we write into it."""
    if str(src).endswith(".pt"):
        obj = torch.load(src, weights_only=True)
        obj.pop(PT_META_KEY)
        torch.save(obj, dst)
    else:
        with safe_open(str(src), framework="pt") as f:
            sd = {k: f.get_tensor(k) for k in f.keys()}
            meta = {k: v for k, v in f.metadata().items() if not k.startswith(HF_META_PREFIX)}
        save_file(sd, str(dst), metadata=meta)
    return dst


@pytest.mark.parametrize("layout,vision_too", [("official", True), ("hf", False)])
def test_custom_size_checkpoint_loads_without_config(tmp_path, layout, vision_too):
    cfg = _custom_config(vision_too)
    model = build_model(cfg, seed=3)
    path = save_checkpoint(model, tmp_path / f"m.{'pt' if layout == 'official' else 'safetensors'}",
                           layout=layout)
    # our writer keeps the config in the file: everything comes back, the name too
    assert load(path).config == cfg
    # without it, the sizes are read off the tensor shapes
    bare = _strip_our_metadata(path, tmp_path / f"bare{path.suffix}")
    got = load(bare)
    assert got.config.name == "custom" and got.config.num_queries == 12
    assert got.config.vision == cfg.vision and got.config.text == cfg.text
    _same_outputs(model, got, cfg.vision.image_size)


def test_custom_size_without_derivable_heads_asks_for_a_config(tmp_path):
    cfg = dataclasses.replace(get_config("test"), d_model=48, heads=4)  # no preset is 48 wide
    path = save_checkpoint(build_model(cfg, seed=0), tmp_path / "m.pt", layout="official")
    bare = _strip_our_metadata(path, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match=r"heads cannot be read .*pass a config") as e:
        load(bare)
    assert "\n" not in str(e.value)
    assert load(bare, config=cfg).config == cfg
    (tmp_path / "cfg.json").write_text(json.dumps(cfg.to_dict()))
    assert main(["convert", str(bare), str(tmp_path / "o.safetensors"), "--to", "ours",
                 "--config", str(tmp_path / "cfg.json")]) == 0
    assert load(tmp_path / "o.safetensors").config == cfg


def _with_0x80_first_byte(path):
    """Rewrite our safetensors file with padded metadata until its first byte is 0x80 (the low
    byte of the header length), which is also how a legacy pickle starts."""
    with safe_open(str(path), framework="pt") as f:
        sd = {k: f.get_tensor(k) for k in f.keys()}
        meta = dict(f.metadata())
    for pad in range(300):
        save_file(sd, str(path), metadata={**meta, "pad": "x" * pad})
        if path.read_bytes()[0] == 0x80:
            return path
    pytest.fail("no padding gave a 0x80 first byte")


def test_video_checkpoint_whose_first_byte_looks_like_a_pickle(tmp_path, capsys):
    video = build_video_model("test", seed=0)
    path = _with_0x80_first_byte(save_video_checkpoint(video, tmp_path / "v.safetensors"))
    det = cs.load(path)
    assert all(torch.equal(v, video.detector.state_dict()[k]) for k, v in det.state_dict().items())
    back = cs.load_video_model(path)
    assert all(torch.equal(v, video.state_dict()[k]) for k, v in back.state_dict().items())
    image = build_model("test", seed=0)
    ipath = _with_0x80_first_byte(save_checkpoint(image, tmp_path / "i.safetensors"))
    assert describe(ipath)["file_format"] == "safetensors"
    _same_outputs(image, cs.load(ipath), 56)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(tmp_path / "x.png")
    for ckpt in (path, ipath):
        assert main(["segment", str(tmp_path / "x.png"), "--text", "red", "--checkpoint",
                     str(ckpt), "--json", str(tmp_path / "o.json")]) == 0, capsys.readouterr().err


def test_convert_keeps_score_bias(tmp_path, capsys):
    cfg = dataclasses.replace(get_config("test"), score_bias=0.75)
    model = build_model(cfg, seed=2)
    src = save_checkpoint(model, tmp_path / "m.safetensors")
    assert main(["convert", str(src), str(tmp_path / "x.pt"), "--to", "official"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "score_bias 0.75" in err[0]
    assert convert(tmp_path / "x.pt", tmp_path / "back.safetensors", "ours") == "official"
    back = load(tmp_path / "back.safetensors")
    assert back.config == cfg
    _same_outputs(model, back, 56)
    (tmp_path / "hfdir").mkdir()
    assert convert(src, tmp_path / "hfdir" / "model.safetensors", "hf") == "ours"
    assert load(tmp_path / "hfdir").config.score_bias == 0.75  # an HF directory


def test_convert_video_checkpoint_to_hf_writes_the_tracker(tmp_path, capsys):
    video = build_video_model("test", seed=0)
    src = save_video_checkpoint(video, tmp_path / "v.safetensors")
    assert main(["convert", str(src), str(tmp_path / "h.safetensors"), "--to", "hf"]) == 0
    assert "video checkpoint" in capsys.readouterr().out
    with safe_open(str(tmp_path / "h.safetensors"), framework="pt") as f:
        prefixes = {k.split(".")[0] for k in f.keys()}
    assert prefixes == {"detector_model", "tracker_model", "tracker_neck"}
    back = load(tmp_path / "h.safetensors", "video")
    for part in ("tracker", "neck"):
        a, b = getattr(video, part).state_dict(), getattr(back, part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    # and back to ours, then official and ours again: the whole model survives
    convert(tmp_path / "h.safetensors", tmp_path / "o.pt", "official")
    convert(tmp_path / "o.pt", tmp_path / "again.safetensors", "ours")
    again = cs.load_video_model(tmp_path / "again.safetensors")
    assert again.tracker_config == video.tracker_config


def test_video_save_keeps_the_source_dtype(tmp_path):
    video = build_video_model("test", seed=0)
    half = save_video_checkpoint(video, tmp_path / "h.safetensors", half=True)
    info = describe(half)
    assert info["dtype"] == torch.float16 and info["has_tracker"]
    model = load(half, "video")  # float32 in memory
    assert next(model.parameters()).dtype == torch.float32
    out = save(model, tmp_path / "again.safetensors", dtype=info["dtype"])
    assert describe(out)["dtype"] == torch.float16 and describe(out)["has_tracker"]
    assert out.stat().st_size == half.stat().st_size


def test_load_kinds(tmp_path):
    video = build_video_model("test", seed=0)
    path = save_video_checkpoint(video, tmp_path / "v.safetensors")
    tracker, _ = load(path, "tracker")
    assert torch.equal(next(iter(tracker.state_dict().values())),
                       next(iter(video.tracker.state_dict().values())))
    with pytest.raises(InputError, match="unknown model kind"):
        load(path, "audio")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a CPU-only torch")
def test_load_on_a_missing_cuda_device_is_one_line(tmp_path):
    path = save_checkpoint(build_model("test", seed=0), tmp_path / "m.safetensors")
    with pytest.raises(InputError, match="no CUDA device"):
        load(path, device="cuda")


def test_convert_to_a_directory_or_unwritable_path_fails_first(tmp_path, capsys):
    src = save_checkpoint(build_model("test", seed=0), tmp_path / "m.safetensors")
    for dst in (tmp_path, "/proc/x.safetensors"):
        assert main(["convert", str(src), str(dst), "--to", "ours"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "output checkpoint" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_custom_size_tracker_loads_without_config(tmp_path):
    base = tracker_config_for(get_config("test"), get_tracker_config("test"))
    tcfg = dataclasses.replace(base, name="mine", memory_layers=3, memory_ffn_dim=192,
                               num_maskmem=5, sam_mlp_dim=128, fuser_layers=1)
    video = build_video_model("test", tcfg, seed=4)
    path = save_video_checkpoint(video, tmp_path / "v.pt", layout="official")
    assert load(path, "video").tracker_config == video.tracker_config  # our metadata
    bare = _strip_our_metadata(path, tmp_path / "bare.pt")
    got = load(bare, "video")
    want = dataclasses.replace(video.tracker_config, name="custom")
    assert got.tracker_config == want
    a, b = video.state_dict(), got.state_dict()
    assert all(torch.equal(v, b[k]) for k, v in a.items())
