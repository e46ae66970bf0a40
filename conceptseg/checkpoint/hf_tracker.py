"""The HF layout of the tracker: the key table between the official SAM 3 tracker layout and
transformers' ``Sam3VideoModel`` tracker (``tracker_model.*``, ``tracker_neck.*``), both ways.

Official: the keys of :class:`~conceptseg.tracker.tracker.Tracker` (``tracker.*`` of ``sam3.pt``
with the prefix stripped) and of :class:`~conceptseg.tracker.neck.TrackerNeck` (``sam2_convs.*``).
transformers: ``Sam3TrackerVideoModel`` (stored as ``tracker_model.*`` in ``facebook/sam3``) and
``Sam3VideoModel.tracker_neck`` (``tracker_neck.*``).

What differs (everything else is a rename, table below):

- ``sam_prompt_encoder.point_embeddings.{0..3}.weight`` (four 1 x C tables) are one 4 x C table
  ``prompt_encoder.point_embed.weight`` (row i = label i);
- the random-Fourier matrix is stored twice by transformers (``prompt_encoder.shared_embedding``
  and ``shared_image_embedding``); ``hf_to_official`` checks the copies agree;
- every 3-layer MLP ``layers.{0,1,2}`` is ``proj_in``, ``layers.0``, ``proj_out``;
- attention ``out_proj`` is ``o_proj``, LayerNorms ``norm*`` are ``layer_norm*``;
- the mask downsampler's Sequential ``encoder.{3k, 3k+1, 3n}`` is ``layers.{k}.conv``,
  ``layers.{k}.layer_norm``, ``final_conv``;
- transformers' model also holds a vision encoder (``vision_encoder.*``), not part of the tracker
  (the SAM 3 tracker reads the detector's ViT): ``hf_to_official`` ignores it.

Round trips are exact (official -> hf -> official is the identity).
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

HF_TRACKER_PREFIX = "tracker_model."  # the tracker's keys in a whole facebook/sam3 file

# Renames as (official, transformers) templates; {i} stands for an index. KEYS match whole keys,
# MODULES match everything before the last dot (the leaf, weight / bias, is kept).
_KEYS: list[tuple[str, str]] = [
    ("maskmem_tpos_enc", "memory_temporal_positional_encoding"),
    ("no_mem_embed", "no_memory_embedding"),
    ("no_mem_pos_enc", "no_memory_positional_encoding"),
    ("no_obj_ptr", "no_object_pointer"),
    ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),
    ("maskmem_backbone.fuser.layers.{i}.gamma", "memory_encoder.memory_fuser.layers.{i}.scale"),
]


def _module_rows() -> list[tuple[str, str]]:
    rows = [("mask_downsample", "mask_downsample"),
            ("obj_ptr_tpos_proj", "temporal_positional_encoding_projection_layer")]
    # memory attention
    ma, ha = "transformer.encoder.layers.{i}.", "memory_attention.layers.{i}."
    for att in ("self_attn", "cross_attn_image"):
        rows += [(f"{ma}{att}.{p}_proj", f"{ha}{att}.{p}_proj") for p in "qkv"]
        rows.append((f"{ma}{att}.out_proj", f"{ha}{att}.o_proj"))
    rows += [(ma + "linear1", ha + "linear1"), (ma + "linear2", ha + "linear2")]
    rows += [(f"{ma}norm{j}", f"{ha}layer_norm{j}") for j in (1, 2, 3)]
    rows.append(("transformer.encoder.norm", "memory_attention.layer_norm"))
    # memory encoder (the mask downsampler is handled apart)
    me, he = "maskmem_backbone.", "memory_encoder."
    rows += [(me + "pix_feat_proj", he + "feature_projection"),
             (me + "out_proj", he + "projection")]
    fo, fh = me + "fuser.layers.{i}.", he + "memory_fuser.layers.{i}."
    rows += [(fo + "dwconv", fh + "depthwise_conv"), (fo + "norm", fh + "layer_norm"),
             (fo + "pwconv1", fh + "pointwise_conv1"), (fo + "pwconv2", fh + "pointwise_conv2")]
    # prompt encoder
    po, ph = "sam_prompt_encoder.", "prompt_encoder."
    rows += [(po + "not_a_point_embed", ph + "not_a_point_embed"),
             (po + "no_mask_embed", ph + "no_mask_embed")]
    rows += [(f"{po}mask_downscaling.{j}", f"{ph}mask_embed.{n}") for j, n in
             ((0, "conv1"), (1, "layer_norm1"), (3, "conv2"), (4, "layer_norm2"), (6, "conv3"))]
    # mask decoder
    do, dh = "sam_mask_decoder.", "mask_decoder."
    to, th = do + "transformer.", dh + "transformer."
    for att in ("layers.{i}.self_attn", "layers.{i}.cross_attn_token_to_image",
                "layers.{i}.cross_attn_image_to_token", "final_attn_token_to_image"):
        rows += [(f"{to}{att}.{p}_proj", f"{th}{att}.{p}_proj") for p in "qkv"]
        rows.append((f"{to}{att}.out_proj", f"{th}{att}.o_proj"))
    rows += [(f"{to}layers.{{i}}.norm{j}", f"{th}layers.{{i}}.layer_norm{j}") for j in (1, 2, 3, 4)]
    rows += [(to + "layers.{i}.mlp.lin1", th + "layers.{i}.mlp.proj_in"),
             (to + "layers.{i}.mlp.lin2", th + "layers.{i}.mlp.proj_out"),
             (to + "norm_final_attn", th + "layer_norm_final_attn")]
    rows += [(do + n, dh + n) for n in ("iou_token", "mask_tokens", "obj_score_token",
                                        "conv_s0", "conv_s1")]
    rows += [(f"{do}output_upscaling.{j}", dh + n) for j, n in
             ((0, "upscale_conv1"), (1, "upscale_layer_norm"), (3, "upscale_conv2"))]
    # 3-layer MLP heads: layers.0 / 1 / 2 -> proj_in / layers.0 / proj_out
    for o, h in ((do + "output_hypernetworks_mlps.{i}", dh + "output_hypernetworks_mlps.{i}"),
                 (do + "iou_prediction_head", dh + "iou_prediction_head"),
                 (do + "pred_obj_score_head", dh + "pred_obj_score_head"),
                 ("obj_ptr_proj", "object_pointer_proj")):
        rows += [(o + ".layers.0", h + ".proj_in"), (o + ".layers.1", h + ".layers.0"),
                 (o + ".layers.2", h + ".proj_out")]
    return rows


_MODULES = _module_rows()

_GAUSS = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_HF_GAUSS = ("prompt_encoder.shared_embedding.positional_embedding",
             "shared_image_embedding.positional_embedding")
_POINTS = re.compile(r"sam_prompt_encoder\.point_embeddings\.(\d+)\.weight")
_HF_POINTS = "prompt_encoder.point_embed.weight"
_DOWN = re.compile(r"maskmem_backbone\.mask_downsampler\.encoder\.(\d+)\.(weight|bias)")
_HF_DOWN = re.compile(r"memory_encoder\.mask_downsampler\.(?:layers\.(\d+)\.(conv|layer_norm)|"
                      r"(final_conv))\.(weight|bias)")

# neck: sam2_convs.{i}.<module> <-> tracker_neck.fpn_layers.{i}.<module>
_NECK = {"dconv_2x2_0": "scale_layers.0", "dconv_2x2_1": "scale_layers.2",
         "dconv_2x2": "scale_layers.0", "conv_1x1": "proj1", "conv_3x3": "proj2"}
_NECK_RE = re.compile(r"sam2_convs\.(\d+)\.(\w+)\.(weight|bias)")
_HF_NECK_RE = re.compile(
    r"tracker_neck\.fpn_layers\.(\d+)\.(scale_layers\.\d|proj[12])\.(weight|bias)")


def _regex(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(re.escape("{i}"), r"(?P<i>\d+)"))


_COMPILED = {
    "to_hf": ([(_regex(o), h) for o, h in _KEYS], [(_regex(o), h) for o, h in _MODULES]),
    "to_official": ([(_regex(h), o) for o, h in _KEYS], [(_regex(h), o) for o, h in _MODULES]),
}


def _rename(key: str, direction: str) -> str | None:
    keys, modules = _COMPILED[direction]
    for rx, target in keys:
        if m := rx.fullmatch(key):
            return target.replace("{i}", m.groupdict().get("i") or "")
    module, _, leaf = key.rpartition(".")
    for rx, target in modules:
        if m := rx.fullmatch(module):
            return target.replace("{i}", m.groupdict().get("i") or "") + "." + leaf
    return None


def official_to_hf(sd: dict[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """Tracker (and optionally ``sam2_convs.*`` neck) state dict -> transformers keys.

    ``prefix`` is put before the tracker keys (``"tracker_model."`` for a ``Sam3VideoModel``
    file); neck keys always become ``tracker_neck.*``.
    """
    out: dict[str, Tensor] = {}
    points: dict[int, Tensor] = {}
    down = [int(m.group(1)) for k in sd if (m := _DOWN.fullmatch(k))]
    final = max(down) if down else None
    for k, v in sd.items():
        if k == _GAUSS:
            for h in _HF_GAUSS:
                out[prefix + h] = v
            continue
        if m := _POINTS.fullmatch(k):
            points[int(m.group(1))] = v
            continue
        if m := _DOWN.fullmatch(k):
            j, leaf = int(m.group(1)), m.group(2)
            base = "memory_encoder.mask_downsampler."
            if j == final:
                out[prefix + base + f"final_conv.{leaf}"] = v
            elif j % 3 == 0:
                out[prefix + base + f"layers.{j // 3}.conv.{leaf}"] = v
            elif j % 3 == 1:
                out[prefix + base + f"layers.{j // 3}.layer_norm.{leaf}"] = v
            else:
                raise KeyError(f"unexpected mask downsampler key {k}")
            continue
        if m := _NECK_RE.fullmatch(k):
            leaf = _NECK.get(m.group(2))
            if leaf is None:
                raise KeyError(f"unknown neck key {k}")
            out[f"tracker_neck.fpn_layers.{m.group(1)}.{leaf}.{m.group(3)}"] = v
            continue
        hf = _rename(k, "to_hf")
        if hf is None:
            raise KeyError(f"no transformers name for tracker key {k}")
        out[prefix + hf] = v
    if points:
        if sorted(points) != list(range(len(points))):
            raise KeyError(f"point embeddings {sorted(points)} are not 0..n-1")
        out[prefix + _HF_POINTS] = torch.cat([points[i] for i in range(len(points))], dim=0)
    return out


def hf_to_official(sd: dict[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """transformers ``Sam3TrackerVideoModel`` (keys after ``prefix``) and ``tracker_neck.*``
    -> official tracker keys (``sam2_convs.*`` for the neck). ``vision_encoder.*`` and keys
    outside ``prefix`` / ``tracker_neck.`` are ignored (give ``prefix="tracker_model."`` for a
    whole ``facebook/sam3`` file, whose detector is ``detector_model.*``)."""
    out: dict[str, Tensor] = {}
    gauss: list[Tensor] = []
    down_layers = [int(m.group(1)) for k in sd if k.startswith(prefix)
                   and (m := _HF_DOWN.fullmatch(k[len(prefix):])) and m.group(1) is not None]
    n_down = max(down_layers) + 1 if down_layers else 0
    for full, v in sd.items():
        if m := _HF_NECK_RE.fullmatch(full):
            lvl, leaf, wb = m.groups()
            two_convs = f"tracker_neck.fpn_layers.{lvl}.scale_layers.2.weight" in sd
            name = {"scale_layers.0": "dconv_2x2_0" if two_convs else "dconv_2x2",
                    "scale_layers.2": "dconv_2x2_1", "proj1": "conv_1x1",
                    "proj2": "conv_3x3"}[leaf]
            out[f"sam2_convs.{lvl}.{name}.{wb}"] = v
            continue
        if not full.startswith(prefix):
            continue
        k = full[len(prefix):]
        if k.startswith("vision_encoder."):
            continue
        if k in _HF_GAUSS:
            gauss.append(v)
            continue
        if k == _HF_POINTS:
            for i in range(v.shape[0]):
                out[f"sam_prompt_encoder.point_embeddings.{i}.weight"] = v[i:i + 1]
            continue
        if m := _HF_DOWN.fullmatch(k):
            layer, kind, final, leaf = m.groups()
            j = 3 * n_down if final else 3 * int(layer) + (0 if kind == "conv" else 1)
            out[f"maskmem_backbone.mask_downsampler.encoder.{j}.{leaf}"] = v
            continue
        off = _rename(k, "to_official")
        if off is None:
            raise KeyError(f"no official name for transformers tracker key {k}")
        out[off] = v
    if gauss:
        if any(not g.equal(gauss[0]) for g in gauss[1:]):
            raise ValueError("transformers' two copies of the prompt position matrix differ")
        out[_GAUSS] = gauss[0]
    return out


def split(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(tracker, neck) of a whole ``facebook/sam3`` file in our naming (``Tracker`` keys and
    ``sam2_convs.*``); both empty when it has no ``tracker_model.*``."""
    if not any(k.startswith(HF_TRACKER_PREFIX) for k in sd):
        return {}, {}
    both = hf_to_official(sd, prefix=HF_TRACKER_PREFIX)
    neck = {k: v for k, v in both.items() if k.startswith("sam2_convs.")}
    return {k: v for k, v in both.items() if k not in neck}, neck
