"""The HF layout of the image model: the key table between the official SAM 3 layout and
transformers' ``Sam3Model`` (``facebook/sam3``), both ways.

``official_to_hf`` and ``hf_to_official`` are pure functions on state dicts. The official layout is
the one of :class:`conceptseg.model.detector.Sam3Detector` (the ``detector.*`` keys of the official
``sam3.pt``, prefix stripped); the transformers layout is the one of ``transformers.Sam3Model``.

What differs (everything else is a one-to-one rename: the tables ``_MODULES`` and ``_ATTNS``):

- fused projections: the ViT ``attn.qkv`` and every ``nn.MultiheadAttention`` ``in_proj_*`` are
  split into ``q_proj`` / ``k_proj`` / ``v_proj`` (row blocks of the fused matrix, in that order);
- ``trunk.pos_embed`` (1 x (1 + n) x C) loses its first, cls slot. The official model never reads
  that slot, so ``hf_to_official`` puts back zeros there;
- the CLIP ``text_projection`` (width x proj, used as ``x @ P``) is stored transposed, as a Linear;
- the FPN's second transposed conv of the 4x level is ``scale_layers.2`` (index 1 is the GELU),
  and the 2x level's only one is ``scale_layers.0``, like the 4x level's first;
- MLP heads count their layers ``layer1, layer2, ...`` instead of ``layers.0, layers.1, ...``;
- not stored by transformers: ``geometry_encoder.points_*`` (the point-prompt path, unused by
  concept prompts: ``hf_to_official`` creates them as zeros, which never affect an output) and the
  RoPE buffers ``attn.freqs_cis`` (``hf_to_official`` recomputes them exactly as the model does).

So official -> hf -> official gives back every tensor bit for bit except the cls slot of
``pos_embed`` and ``points_*`` (zeros), and hf -> official -> hf is the identity.

Full checkpoints. ``official_to_hf`` also takes a whole official ``sam3.pt`` model dict
(``detector.*`` + ``tracker.*``): it keeps the ``detector.`` keys. In either layout it drops the
parts that are not the concept detector: ``backbone.vision_backbone.sam2_convs.*`` (the tracker's
FPN neck) and ``inst_interactive_predictor.*``. ``hf_to_official`` takes a ``Sam3Model`` state
dict or a whole ``facebook/sam3`` (``Sam3VideoModel``) file, whose keys are ``detector_model.*``
(the ``Sam3Model``), ``tracker_model.*`` and ``tracker_neck.*`` (transformers' name for
``sam2_convs``): it keeps the ``detector_model.`` keys. Any other unknown key is an error.
"""

from __future__ import annotations

import functools
import re

import torch
from torch import Tensor

from ..config import Sam3Config
from ..model.detector import Sam3Detector
from ..model.vision import block_rope_freqs

_V = "backbone.vision_backbone."
_T = "backbone.language_backbone.encoder."
_DEC = "transformer.decoder."
_HV = "vision_encoder.backbone."
_HN = "vision_encoder.neck.fpn_layers."
_HT = "text_encoder.text_model."

# (official module, transformers module): plain renames of module.<leaf>.
# {i}: the same index on both sides; {j} (official, 0-based) <-> {j+1} (transformers, 1-based).
_MODULES: list[tuple[str, str]] = [
    (_V + "trunk.patch_embed.proj", _HV + "embeddings.patch_embeddings.projection"),
    (_V + "trunk.ln_pre", _HV + "layer_norm"),
    (_V + "trunk.blocks.{i}.norm1", _HV + "layers.{i}.layer_norm1"),
    (_V + "trunk.blocks.{i}.norm2", _HV + "layers.{i}.layer_norm2"),
    (_V + "trunk.blocks.{i}.mlp.fc1", _HV + "layers.{i}.mlp.fc1"),
    (_V + "trunk.blocks.{i}.mlp.fc2", _HV + "layers.{i}.mlp.fc2"),
    (_V + "convs.{i}.dconv_2x2_0", _HN + "{i}.scale_layers.0"),
    (_V + "convs.{i}.dconv_2x2_1", _HN + "{i}.scale_layers.2"),
    (_V + "convs.{i}.dconv_2x2", _HN + "{i}.scale_layers.0"),
    (_V + "convs.{i}.conv_1x1", _HN + "{i}.proj1"),
    (_V + "convs.{i}.conv_3x3", _HN + "{i}.proj2"),
    (_T + "token_embedding", _HT + "embeddings.token_embedding"),
    (_T + "ln_final", _HT + "final_layer_norm"),
    (_T + "transformer.resblocks.{i}.ln_1", _HT + "encoder.layers.{i}.layer_norm1"),
    (_T + "transformer.resblocks.{i}.ln_2", _HT + "encoder.layers.{i}.layer_norm2"),
    (_T + "transformer.resblocks.{i}.mlp.c_fc", _HT + "encoder.layers.{i}.mlp.fc1"),
    (_T + "transformer.resblocks.{i}.mlp.c_proj", _HT + "encoder.layers.{i}.mlp.fc2"),
    ("backbone.language_backbone.resizer", "text_projection"),
    *[("geometry_encoder." + n, "geometry_encoder." + n) for n in (
        "label_embed", "cls_embed", "boxes_direct_project", "boxes_pool_project",
        "boxes_pos_enc_project", "final_proj")],
    ("geometry_encoder.img_pre_norm", "geometry_encoder.vision_layer_norm"),
    ("geometry_encoder.norm", "geometry_encoder.prompt_layer_norm"),
    ("geometry_encoder.encode_norm", "geometry_encoder.output_layer_norm"),
    *[(f"{o}.{{i}}.{a}", f"{h}.{{i}}.{b}")
      for o, h in (("geometry_encoder.encode", "geometry_encoder.layers"),
                   ("transformer.encoder.layers", "detr_encoder.layers"))
      for a, b in (("linear1", "mlp.fc1"), ("linear2", "mlp.fc2"), ("norm1", "layer_norm1"),
                   ("norm2", "layer_norm2"), ("norm3", "layer_norm3"))],
    *[(_DEC + "layers.{i}." + a, "detr_decoder.layers.{i}." + b) for a, b in (
        ("linear1", "mlp.fc1"), ("linear2", "mlp.fc2"), ("norm1", "vision_cross_attn_layer_norm"),
        ("catext_norm", "text_cross_attn_layer_norm"), ("norm2", "self_attn_layer_norm"),
        ("norm3", "mlp_layer_norm"))],
    *[(_DEC + a, "detr_decoder." + b) for a, b in (
        ("query_embed", "query_embed"), ("reference_points", "reference_points"),
        ("presence_token", "presence_token"), ("presence_token_out_norm", "presence_layer_norm"),
        ("norm", "output_layer_norm"),
        ("presence_token_head.layers.{j}", "presence_head.layer{j+1}"),
        ("bbox_embed.layers.{j}", "box_head.layer{j+1}"),
        ("ref_point_head.layers.{j}", "ref_point_head.layer{j+1}"),
        ("boxRPB_embed_x.layers.{j}", "box_rpb_embed_x.layer{j+1}"),
        ("boxRPB_embed_y.layers.{j}", "box_rpb_embed_y.layer{j+1}"))],
    ("dot_prod_scoring.prompt_mlp.layers.{j}", "dot_product_scoring.text_mlp.layer{j+1}"),
    ("dot_prod_scoring.prompt_mlp.out_norm", "dot_product_scoring.text_mlp_out_norm"),
    ("dot_prod_scoring.prompt_proj", "dot_product_scoring.text_proj"),
    ("dot_prod_scoring.hs_proj", "dot_product_scoring.query_proj"),
    ("segmentation_head.pixel_decoder.conv_layers.{i}",
     "mask_decoder.pixel_decoder.conv_layers.{i}"),
    ("segmentation_head.pixel_decoder.norms.{i}", "mask_decoder.pixel_decoder.norms.{i}"),
    ("segmentation_head.mask_predictor.mask_embed.layers.{i}",
     "mask_decoder.mask_embedder.layers.{i}"),
    ("segmentation_head.instance_seg_head", "mask_decoder.instance_projection"),
    ("segmentation_head.semantic_seg_head", "mask_decoder.semantic_projection"),
    ("segmentation_head.cross_attn_norm", "mask_decoder.prompt_cross_attn_norm"),
]

# (official attention module, transformers attention module, fused input name, official output
# projection, transformers output projection)
_MHA = ("in_proj_", "out_proj", "o_proj")  # nn.MultiheadAttention -> Sam3Attention
_ATTNS: list[tuple[str, str, str, str, str]] = [
    (_V + "trunk.blocks.{i}.attn", _HV + "layers.{i}.attention", "qkv.", "proj", "o_proj"),
    (_T + "transformer.resblocks.{i}.attn", _HT + "encoder.layers.{i}.self_attn",
     "in_proj_", "out_proj", "out_proj"),
    *[(f"{o}.{{i}}.{a}", f"{h}.{{i}}.{b}", *_MHA)
      for o, h in (("geometry_encoder.encode", "geometry_encoder.layers"),
                   ("transformer.encoder.layers", "detr_encoder.layers"))
      for a, b in (("self_attn", "self_attn"), ("cross_attn_image", "cross_attn"))],
    (_DEC + "layers.{i}.self_attn", "detr_decoder.layers.{i}.self_attn", *_MHA),
    (_DEC + "layers.{i}.ca_text", "detr_decoder.layers.{i}.text_cross_attn", *_MHA),
    (_DEC + "layers.{i}.cross_attn", "detr_decoder.layers.{i}.vision_cross_attn", *_MHA),
    ("segmentation_head.cross_attend_prompt", "mask_decoder.prompt_cross_attn", *_MHA),
]

_POS_EMBED = (_V + "trunk.pos_embed", _HV + "embeddings.position_embeddings")
_TEXT_POS = (_T + "positional_embedding", _HT + "embeddings.position_embedding.weight")
_TEXT_PROJ = (_T + "text_projection", "text_encoder.text_projection.weight")
_FREQS = re.compile(re.escape(_V) + r"trunk\.blocks\.\d+\.attn\.freqs_cis")
_POINTS = re.compile(r"geometry_encoder\.points_(direct|pool|pos_enc)_project\.(weight|bias)")
# Parts of the official / transformers checkpoints that are not the concept detector.
_OFFICIAL_OTHER = ("backbone.vision_backbone.sam2_convs.", "inst_interactive_predictor.")
_HF_OTHER = ("tracker_model.", "tracker_neck.")


@functools.lru_cache(maxsize=None)
def _pattern(template: str, leaf: str) -> re.Pattern:
    rx = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
    return re.compile(rx.replace(r"\{j\+1\}", r"(?P<j1>\d+)") + r"\.(?P<rest>" + leaf + ")")


def _fill(template: str, i: str | None, j: int | None) -> str:
    if i is not None:
        template = template.replace("{i}", i)
    if j is not None:
        template = template.replace("{j+1}", str(j + 1)).replace("{j}", str(j))
    return template


def _translate(key: str, rules, to_hf: bool) -> tuple[list[tuple], str] | None:
    """(official module, hf module, rule) for each rule matching ``key``, and the leaf name."""
    found, rest = [], None
    for rule in rules:
        # attention modules: "qkv.weight", "in_proj_bias", ...; plain modules: "weight", "bias"
        leaf = ".+" if len(rule) > 2 else "[^.]+"
        m = _pattern(rule[0] if to_hf else rule[1], leaf).fullmatch(key)
        if m is None:
            continue
        g = m.groupdict()
        j = int(g["j"]) if g.get("j") else int(g["j1"]) - 1 if g.get("j1") else None
        found.append((_fill(rule[0], g.get("i"), j), _fill(rule[1], g.get("i"), j), rule))
        rest = g["rest"]
    return (found, rest) if found else None


def _select(sd: dict[str, Tensor], prefix: str, others: tuple[str, ...],
            whole_file_others: tuple[str, ...]) -> dict[str, Tensor]:
    if any(k.startswith(prefix) for k in sd):
        bad = [k for k in sd if not k.startswith((prefix,) + whole_file_others)]
        if bad:
            raise KeyError(f"keys outside {prefix!r} and {whole_file_others}: {bad[:5]}")
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return {k: v for k, v in sd.items() if not k.startswith(others)}


def official_to_hf(sd: dict[str, Tensor], *, share: bool = False) -> dict[str, Tensor]:
    """Official image-model state dict (or a whole official ``sam3.pt`` model dict) -> the
    ``transformers.Sam3Model`` state dict.

    The split q / k / v blocks get their own storage (safetensors' ``save_file`` refuses tensors
    that share memory); ``share=True`` keeps them as views of the fused tensors, to save memory.
    Every other tensor is passed through (or, for ``text_projection``, transposed).
    """
    sd = _select(sd, "detector.", _OFFICIAL_OTHER, ("tracker.",))
    out: dict[str, Tensor] = {}
    unknown = []
    for key, t in sd.items():
        if key == _POS_EMBED[0]:
            out[_POS_EMBED[1]] = t[:, 1:]
        elif key == _TEXT_POS[0]:
            out[_TEXT_POS[1]] = t
        elif key == _TEXT_PROJ[0]:
            out[_TEXT_PROJ[1]] = t.t().contiguous()
        elif _FREQS.fullmatch(key) or _POINTS.fullmatch(key):
            continue  # not stored by transformers (see the module docstring)
        elif (hit := _translate(key, _ATTNS, to_hf=True)) is not None:
            (_, hf, (_, _, fused, o_out, h_out)), leaf = hit[0][0], hit[1]
            if leaf.startswith(fused):
                param = leaf[len(fused):]  # weight / bias
                for name, part in zip(("q_proj", "k_proj", "v_proj"), t.chunk(3, dim=0)):
                    out[f"{hf}.{name}.{param}"] = part if share else part.clone()
            elif leaf.startswith(o_out + "."):
                out[f"{hf}.{h_out}.{leaf[len(o_out) + 1:]}"] = t
            else:
                unknown.append(key)
        elif (hit := _translate(key, _MODULES, to_hf=True)) is not None and len(hit[0]) == 1:
            out[f"{hit[0][0][1]}.{hit[1]}"] = t
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"{len(unknown)} keys with no transformers name: {unknown[:8]}")
    return out


def rope_buffers(cfg: Sam3Config) -> dict[str, Tensor]:
    """The ``freqs_cis`` RoPE buffers of every ViT block, computed as ``ViTBlock`` does."""
    return {_V + f"trunk.blocks.{b}.attn.freqs_cis": block_rope_freqs(cfg.vision, b)
            for b in range(cfg.vision.depth)}


def looks_like_hf(keys) -> bool:
    """Whether state-dict keys are in the transformers layout (``Sam3Model`` or a whole
    ``facebook/sam3`` file)."""
    return any(k.startswith(("detector_model.", "vision_encoder.backbone.", "detr_decoder."))
               for k in keys)


def hf_to_official(sd: dict[str, Tensor], cfg: Sam3Config | None = None) -> dict[str, Tensor]:
    """``transformers.Sam3Model`` state dict (or a whole ``facebook/sam3`` file) -> the official
    image-model state dict.

    The cls slot of ``pos_embed`` comes back as zeros (the model never reads it). With ``cfg``, the
    tensors transformers does not store are recreated too: the ``geometry_encoder.points_*``
    weights as zeros (they never affect an output) and the ``freqs_cis`` buffers exactly
    (:func:`rope_buffers`); the result is then checked against the keys and shapes of
    ``Sam3Detector(cfg)`` and ordered like them. Without ``cfg`` those tensors are left out (a
    loader that knows the config fills them).
    """
    sd = _select(sd, "detector_model.", _HF_OTHER, _HF_OTHER)
    out: dict[str, Tensor] = {}
    unknown = []
    for key, t in sd.items():
        if key == _POS_EMBED[1]:
            out[_POS_EMBED[0]] = torch.cat([t.new_zeros(t.shape[0], 1, t.shape[2]), t], dim=1)
        elif key == _TEXT_POS[1]:
            out[_TEXT_POS[0]] = t
        elif key == _TEXT_PROJ[1]:
            out[_TEXT_PROJ[0]] = t.t().contiguous()
        elif (hit := _translate(key, _ATTNS, to_hf=False)) is not None:
            (off, hf, (_, _, fused, o_out, h_out)), leaf = hit[0][0], hit[1]
            head, _, param = leaf.partition(".")
            if head == "q_proj":
                parts = [sd.get(f"{hf}.{n}.{param}") for n in ("q_proj", "k_proj", "v_proj")]
                if any(p is None for p in parts):
                    raise KeyError(f"{hf}: q_proj.{param} without k_proj / v_proj")
                out[off + "." + fused + param] = torch.cat(parts, dim=0)
            elif head in ("k_proj", "v_proj"):
                continue  # joined with q_proj
            elif head == h_out:
                out[f"{off}.{o_out}.{param}"] = t
            else:
                unknown.append(key)
        elif (hit := _translate(key, _MODULES, to_hf=False)) is not None:
            found, leaf = hit
            if len(found) > 1:  # scale_layers.0: first conv of the 4x level or only one of 2x
                four_x = key.replace("scale_layers.0.", "scale_layers.2.") in sd
                found = [f for f in found if f[0].endswith("_0") == four_x]
            out[f"{found[0][0]}.{leaf}"] = t
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"{len(unknown)} keys with no official name: {unknown[:8]}")
    if cfg is None:
        return out
    with torch.device("meta"):
        ref = Sam3Detector(cfg).state_dict()
    like = out.get(_POS_EMBED[0], next(iter(out.values())))
    for key, t in rope_buffers(cfg).items():
        out[key] = t.to(like.device)
    for key in ref:
        if _POINTS.fullmatch(key):
            out[key] = torch.zeros(ref[key].shape, dtype=like.dtype, device=like.device)
    missing, extra = sorted(set(ref) - set(out)), sorted(set(out) - set(ref))
    wrong = [k for k in ref if k in out and out[k].shape != ref[k].shape]
    if missing or extra or wrong:
        raise ValueError(f"does not fit config {cfg.name!r}: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}, wrong shape {wrong[:5]}")
    return {k: out[k] for k in ref}  # in the model's order
