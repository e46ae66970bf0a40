"""Model configs read off tensor shapes, for checkpoints that carry none (official, HF).

A checkpoint whose names and shapes equal a preset's gets that preset. Otherwise every size
that shapes show is read from them (widths, depths, MLP sizes, queries, vocabulary, context,
patch and pre-training grid; with the RoPE buffers of the official layout also the ViT heads,
window and image size). What shapes cannot show is taken from the presets only where they all
agree for the same widths (attention heads; for HF files the ViT window, global blocks and image
size), and otherwise named in the error, which asks for a config. The result is checked: the
model it builds has exactly the checkpoint's names and shapes (and RoPE tables, where stored).
"""

from __future__ import annotations

import dataclasses
import math
import re

import torch
from torch import Tensor

from ..config import PRESETS, Sam3Config, TextConfig, VisionConfig
from ..errors import CheckpointError
from ..model.detector import Sam3Detector
from ..model.video_model import tracker_config_for
from ..tracker.config import TRACKER_PRESETS, TrackerConfig
from ..tracker.neck import TrackerNeck
from ..tracker.tracker import Tracker
from .hf import rope_buffers

# Tensors that some layouts do not store and that never change outputs: RoPE factors are
# recomputed from the config; point projections are unused by concept segmentation.
DERIVABLE = ("attn.freqs_cis", "geometry_encoder.points_")
_V = "backbone.vision_backbone."
_TRUNK = _V + "trunk."
_TEXT = "backbone.language_backbone.encoder."


def is_derivable(key: str) -> bool:
    return any(d in key for d in DERIVABLE)


def derivable_tensors(config: Sam3Config) -> dict[str, Tensor]:
    """The tensors of :data:`DERIVABLE`: RoPE tables exactly, point projections as zeros."""
    out = rope_buffers(config)
    d = config.d_model
    for name, shape in (("points_direct_project", (d, 2)), ("points_pool_project", (d, d)),
                        ("points_pos_enc_project", (d, d))):
        out[f"geometry_encoder.{name}.weight"] = torch.zeros(shape)
        out[f"geometry_encoder.{name}.bias"] = torch.zeros(d)
    return out


def fill_derivable(sd: dict[str, Tensor], config: Sam3Config) -> dict[str, Tensor]:
    """``sd`` plus the derivable tensors it lacks."""
    fresh = derivable_tensors(config)
    return {**{k: v for k, v in fresh.items() if k not in sd}, **sd}


def _signature(sd: dict[str, Tensor]) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in sd.items() if not is_derivable(k)}


_PRESET_SHAPES: dict[str, dict[str, tuple]] = {}  # preset name -> its signature


def _meta_shapes(config: Sam3Config) -> dict[str, tuple]:
    with torch.device("meta"):
        return _signature(Sam3Detector(config).state_dict())


def _preset_shapes(name: str) -> dict[str, tuple]:
    if name not in _PRESET_SHAPES:
        _PRESET_SHAPES[name] = _meta_shapes(PRESETS[name]())
    return _PRESET_SHAPES[name]


def _diff(ref: dict[str, tuple], sig: dict[str, tuple]) -> list[str]:
    return sorted(k for k in ref.keys() | sig.keys() if ref.get(k) != sig.get(k))


def _count(sd: dict[str, Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def _agreed(presets: list[Sam3Config], key, get) -> object | None:
    """The value of ``get(preset)`` shared by every preset whose ``key(preset)`` matches."""
    values = {get(p) for p in presets if key(p)}
    return values.pop() if len(values) == 1 else None


def _vision(sd: dict[str, Tensor], presets, unknown: list[str]) -> VisionConfig:
    proj = sd[_TRUNK + "patch_embed.proj.weight"]
    width, patch = proj.shape[0], proj.shape[2]
    depth = _count(sd, re.escape(_TRUNK) + r"blocks\.(\d+)\.")
    hidden = sd[_TRUNK + "blocks.0.mlp.fc1.weight"].shape[0]
    pos = sd[_TRUNK + "pos_embed"].shape[1] - 1  # a cls slot, then the pre-training grid
    v = VisionConfig(width=width, patch_size=patch, depth=depth, mlp_ratio=hidden / width,
                     pretrain_image_size=math.isqrt(pos) * patch)
    freqs = [sd.get(_TRUNK + f"blocks.{b}.attn.freqs_cis") for b in range(depth)]
    if all(f is not None for f in freqs):  # official layout: RoPE tables give heads and grids
        sides = [math.isqrt(f.shape[0]) for f in freqs]
        window, grid = min(sides), max(sides)
        return dataclasses.replace(
            v, heads=width // (2 * freqs[0].shape[1]), window_size=window,
            image_size=grid * patch,
            global_blocks=tuple(b for b, s in enumerate(sides) if s == grid and grid != window))
    same = [p for p in presets if (p.vision.width, p.vision.depth, p.vision.patch_size) ==
            (width, depth, patch)]
    for name in ("heads", "window_size", "image_size", "global_blocks"):
        value = _agreed(same, lambda p: True, lambda p, name=name: getattr(p.vision, name))
        if value is None:
            unknown.append(f"vision.{name}")
        else:
            v = dataclasses.replace(v, **{name: value})
    return v


def _text(sd: dict[str, Tensor], presets, unknown: list[str]) -> TextConfig:
    tok = sd[_TEXT + "token_embedding.weight"]
    width = tok.shape[1]
    heads = _agreed(presets, lambda p: p.text.width == width, lambda p: p.text.heads)
    if heads is None:
        unknown.append("text.heads")
    return TextConfig(
        width=width, vocab_size=tok.shape[0], heads=heads or 1,
        layers=_count(sd, re.escape(_TEXT) + r"transformer\.resblocks\.(\d+)\."),
        mlp_ratio=sd[_TEXT + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width,
        context_length=sd[_TEXT + "positional_embedding"].shape[0],
        projection_dim=sd[_TEXT + "text_projection"].shape[1])


def _from_shapes(sd: dict[str, Tensor]) -> tuple[Sam3Config, list[str]]:
    """A config with every size the shapes show; the names of the fields they do not."""
    presets = [make() for make in PRESETS.values()]
    unknown: list[str] = []
    vision, text = _vision(sd, presets, unknown), _text(sd, presets, unknown)
    d = sd["backbone.language_backbone.resizer.weight"].shape[0]
    first = sd[_V + "convs.0.conv_1x1.weight"].shape[1]  # 4x: width / 4 in, 2x: width / 2 ...
    levels = _count(sd, re.escape(_V) + r"convs\.(\d+)\.")
    scales = tuple(vision.width / first / 2 ** i for i in range(levels))
    cfg = Sam3Config(
        vision=vision, text=text, d_model=d, neck_scales=scales,
        ffn_dim=sd["transformer.encoder.layers.0.linear1.weight"].shape[0],
        geometry_layers=_count(sd, r"geometry_encoder\.encode\.(\d+)\."),
        encoder_layers=_count(sd, r"transformer\.encoder\.layers\.(\d+)\."),
        decoder_layers=_count(sd, r"transformer\.decoder\.layers\.(\d+)\."),
        num_queries=sd["transformer.decoder.query_embed.weight"].shape[0],
        roi_size=sd["geometry_encoder.boxes_pool_project.weight"].shape[-1],
        dot_mlp_hidden=sd["dot_prod_scoring.prompt_mlp.layers.0.weight"].shape[0],
        pixel_decoder_stages=_count(sd, r"segmentation_head\.pixel_decoder\.conv_layers\.(\d+)\."))
    for name, key in (("heads", lambda p: p.d_model == d),
                      ("scalp", lambda p: p.neck_scales == scales)):
        value = _agreed(presets, key, lambda p, name=name: getattr(p, name))
        if value is None:
            unknown.append(name)
        else:
            cfg = dataclasses.replace(cfg, **{name: value})
    return cfg, unknown


def infer_config(sd: dict[str, Tensor], source: str = "checkpoint") -> Sam3Config:
    """The config of an official image-layout state dict (RoPE tables and point projections
    optional), see the module docstring; CheckpointError when it cannot be read off."""
    sig = _signature(sd)
    for name, make in PRESETS.items():
        if _preset_shapes(name) == sig:
            return make()
    closest, near = min(((n, _diff(_preset_shapes(n), sig)) for n in PRESETS),
                        key=lambda t: len(t[1]))
    nearest = f"closest preset {closest!r} differs in {len(near)} tensors, e.g. {near[:3]}"
    try:
        cfg, unknown = _from_shapes(sd)
    except (KeyError, IndexError) as e:
        if len(near) > 0.5 * max(len(sig), 1):
            raise CheckpointError(f"{source}: not a SAM 3 image-model checkpoint (keys such as "
                                  f"{sorted(sig)[:2]} belong to no known layout)") from None
        raise CheckpointError(f"{source}: sizes match no preset ({nearest}) and cannot be read "
                              f"off the tensor shapes (no {e}); pass a config") from None
    if unknown:
        raise CheckpointError(f"{source}: sizes match no preset ({nearest}) and "
                              f"{', '.join(unknown)} cannot be read from the tensor shapes; pass "
                              "a config (--config config.json or a preset name)")
    diff = _diff(_meta_shapes(cfg), sig)
    stored = {k: v for k, v in sd.items() if k.endswith("freqs_cis")}
    ropes = rope_buffers(cfg)
    diff += [k for k, v in stored.items() if k in ropes and not torch.equal(v, ropes[k])]
    if diff:
        raise CheckpointError(f"{source}: sizes match no preset ({nearest}), and the config read "
                              f"from the shapes does not fit {len(diff)} tensors (e.g. "
                              f"{diff[:3]}); pass a config (--config config.json)")
    return cfg


def infer_tracker_config(det_cfg: Sam3Config, trk: dict[str, Tensor], neck: dict[str, Tensor],
                         source: str = "checkpoint") -> TrackerConfig:
    """The tracker config (geometry from the detector) of these tracker and neck tensors: a
    preset whose names and shapes equal them, else the sizes read off the shapes with the rest
    taken from the presets where they agree; CheckpointError naming what cannot be read."""
    got = _tracker_signature(trk, neck)
    presets = [tracker_config_for(det_cfg, make()) for make in TRACKER_PRESETS.values()]
    diffs = [(p.name, _diff(_tracker_shapes(p), got)) for p in presets]
    for cfg, (_, diff) in zip(presets, diffs):
        if not diff:
            return cfg
    closest, near = min(diffs, key=lambda t: len(t[1]))
    nearest = (f"closest preset {closest!r} differs in {len(near)} tensors, e.g. "
               f"{[k[2:] for k in near[:3]]}")
    try:
        sizes = _tracker_sizes(trk, neck, det_cfg.vision.width)
    except (KeyError, IndexError) as e:
        raise CheckpointError(f"{source}: tracker sizes match no preset ({nearest}) and cannot "
                              f"be read off the tensor shapes (no {e})") from None
    d, unknown = sizes["d_model"], []
    cfg = tracker_config_for(det_cfg, TrackerConfig(**sizes))
    hidden = {f.name for f in dataclasses.fields(TrackerConfig)} - set(sizes) - {
        "image_size", "backbone_stride", "vit_dim", "mask_interpol_size", "name"}
    for name in sorted(hidden):
        value = _agreed(presets, lambda p: True, lambda p, name=name: getattr(p, name))
        if value is None:  # the presets differ: those of the same width may still agree
            value = _agreed(presets, lambda p: p.d_model == d,
                            lambda p, name=name: getattr(p, name))
        if value is None:
            unknown.append(name)
        else:
            cfg = dataclasses.replace(cfg, **{name: value})
    if unknown:
        raise CheckpointError(f"{source}: tracker sizes match no preset ({nearest}) and "
                              f"{', '.join(unknown)} cannot be read from the tensor shapes; save "
                              "it in our format with its config, or pass a tracker config")
    diff = _diff(_tracker_shapes(cfg), got)
    if diff:
        raise CheckpointError(f"{source}: tracker sizes match no preset ({nearest}), and the "
                              f"config read from the shapes does not fit {len(diff)} tensors (e.g. "
                              f"{[k[2:] for k in diff[:3]]}); pass a tracker config")
    return cfg


def _tracker_sizes(trk: dict[str, Tensor], neck: dict[str, Tensor], vit_dim: int) -> dict:
    """The TrackerConfig fields that tensor shapes show."""
    d = trk["no_obj_ptr"].shape[1]
    dec, fuser = "sam_mask_decoder.", "maskmem_backbone.fuser.layers."
    down = sorted(int(m.group(1)) for k, v in trk.items() if v.dim() == 4 and (
        m := re.fullmatch(r"maskmem_backbone\.mask_downsampler\.encoder\.(\d+)\.weight", k)))
    first = trk[f"maskmem_backbone.mask_downsampler.encoder.{down[0]}.weight"]
    stride = math.isqrt(first.shape[0] // first.shape[1])
    levels = _count(neck, r"sam2_convs\.(\d+)\.")
    top_scale = vit_dim / neck["sam2_convs.0.conv_1x1.weight"].shape[1]  # 4x: vit_dim / 4 in
    return dict(  # noqa: C408 (keyword form: these are TrackerConfig fields)
        d_model=d, mem_dim=trk["maskmem_tpos_enc"].shape[-1],
        num_maskmem=trk["maskmem_tpos_enc"].shape[0],
        memory_layers=_count(trk, r"transformer\.encoder\.layers\.(\d+)\."),
        memory_ffn_dim=trk["transformer.encoder.layers.0.linear1.weight"].shape[0],
        fuser_layers=_count(trk, re.escape(fuser) + r"(\d+)\."),
        fuser_kernel=trk[fuser + "0.dwconv.weight"].shape[-1],
        fuser_mlp_ratio=trk[fuser + "0.pwconv1.weight"].shape[0] // d,
        mask_in_chans=trk["sam_prompt_encoder.mask_downscaling.3.weight"].shape[0],
        sam_depth=_count(trk, re.escape(dec) + r"transformer\.layers\.(\d+)\."),
        sam_mlp_dim=trk[dec + "transformer.layers.0.mlp.lin1.weight"].shape[0],
        sam_attn_downsample=d // trk[dec + "transformer.final_attn_token_to_image.q_proj.weight"]
        .shape[0],
        num_multimask_outputs=trk[dec + "mask_tokens.weight"].shape[0] - 1,
        iou_head_depth=_count(trk, re.escape(dec) + r"iou_prediction_head\.layers\.(\d+)\."),
        iou_head_hidden_dim=trk[dec + "iou_prediction_head.layers.0.weight"].shape[0],
        mask_downsampler_stride=stride, mask_downsampler_total_stride=stride ** (len(down) - 1),
        neck_scales=tuple(top_scale / 2 ** i for i in range(levels)))


def _tracker_shapes(cfg: TrackerConfig) -> dict[str, tuple]:
    with torch.device("meta"):
        return _tracker_signature(Tracker(cfg).state_dict(), TrackerNeck(cfg).state_dict())


def _tracker_signature(trk: dict[str, Tensor], neck: dict[str, Tensor]) -> dict[str, tuple]:
    return {**{f"t.{k}": tuple(v.shape) for k, v in trk.items()},
            **{f"n.{k}": tuple(v.shape) for k, v in neck.items()}}
