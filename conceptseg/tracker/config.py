"""Dataclass config of the SAM 3 tracker (the SAM 2 style memory tracker of the video model).

Every size is a field. Presets: ``sam3`` (the official video model's ``tracker.*``), ``fixture``
(the sizes of ``shared/reference/official_small``), ``tiny`` (the CPU-trainable tracker paired
with the shipped ``tiny`` detector, see conceptseg/train/TRACKER.md) and ``test`` (a tiny model
for unit tests, sized so that transformers' ``Sam3TrackerVideoModel`` can mirror it: that port
hard-codes a 64-channel memory).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import preset


@dataclass
class TrackerConfig:
    # -- geometry -------------------------------------------------------------------------------
    image_size: int = 1008  # tracker input side (the detector's, images are squashed to it)
    backbone_stride: int = 14  # image pixels per token of the top (g x g) feature level
    # -- tracker neck (``sam2_convs``, a separately trained copy of the detector's SimpleFPN) ----
    vit_dim: int = 1024  # width of the ViT trunk output the neck reads
    neck_scales: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)
    scalp: int = 1  # the last level (0.5x) is built for the checkpoint but never computed
    # -- widths ---------------------------------------------------------------------------------
    d_model: int = 256  # neck, SAM heads, memory attention, object pointers
    mem_dim: int = 64  # memory features; object pointers are split into d_model / mem_dim tokens
    # -- memory attention (4 pre-norm layers: RoPE self-attn, RoPE cross-attn to memory, FFN) ----
    memory_layers: int = 4
    memory_heads: int = 1
    memory_ffn_dim: int = 2048
    rope_theta: float = 10000.0
    input_pos_scale: float = 0.1  # attention input = features + 0.1 * sine position
    # -- memory encoder -------------------------------------------------------------------------
    mask_interpol_size: int = 1152  # masks are resized to this side before the downsampler
    mask_downsampler_stride: int = 2  # per conv (kernel 3, padding 1)
    mask_downsampler_total_stride: int = 16  # so the memory lands on the g x g grid
    fuser_layers: int = 2  # ConvNeXt blocks
    fuser_kernel: int = 7
    fuser_mlp_ratio: int = 4
    sigmoid_scale_for_mem_enc: float = 20.0  # mask probabilities -> 20 p - 10 before encoding
    sigmoid_bias_for_mem_enc: float = -10.0
    # -- SAM prompt encoder / mask decoder (fixed SAM sizes, independent of d_model) -------------
    mask_in_chans: int = 16
    sam_depth: int = 2
    sam_heads: int = 8
    sam_mlp_dim: int = 2048
    sam_attn_downsample: int = 2  # token <-> image attention works at d_model / 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    dynamic_multimask_via_stability: bool = True  # single-mask output falls back to multimask
    stability_delta: float = 0.05
    stability_thresh: float = 0.98
    # multimask output is used when the prompt has between min and max points (a box counts as
    # two); the official video build uses it for tracking too (0 points)
    multimask_output_in_sam: bool = True
    multimask_output_for_tracking: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    # more clicks than this: only the first half and the last half are encoded (official
    # predictor, to stay close to training with 8 clicks); 0 = no limit
    max_points_in_prompt: int = 16
    # -- memory bank ----------------------------------------------------------------------------
    num_maskmem: int = 7  # 1 conditioning slot (temporal index 0) + 6 recent frames
    max_cond_frames_in_attn: int = 4  # conditioning frames attended to (temporally closest)
    keep_first_cond_frame: bool = False
    max_obj_ptrs: int = 16  # object pointers from at most this many frames
    use_memory_selection: bool = True  # SAM2Long-style filtering (video build default)
    memory_selection_threshold: float = 0.01
    # the official predictor casts stored memory features to bfloat16 (also on CPU); keep it for
    # parity, switch off to keep float32 memories
    store_memory_bf16: bool = True
    name: str = "custom"

    @property
    def grid(self) -> int:
        """Side of the top feature level (72 for the full model)."""
        return self.image_size // self.backbone_stride

    @property
    def low_res_size(self) -> int:
        """Side of the SAM mask logits (4 x grid = 288 for the full model)."""
        return 4 * self.grid

    @property
    def input_mask_size(self) -> int:
        """Side that mask prompts are resized to (4 x low_res_size = 1152 for the full model)."""
        return 4 * self.low_res_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrackerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown tracker config fields: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def sam3_tracker_config() -> TrackerConfig:
    """The official SAM 3 video model's tracker (11.74 M parameters + the 7.8 M neck)."""
    return TrackerConfig(name="sam3")


def fixture_tracker_config() -> TrackerConfig:
    """The tracker of ``shared/reference/official_small`` (d_model 64, memory 16, 2 layers)."""
    return TrackerConfig(
        image_size=112, vit_dim=64, d_model=64, mem_dim=16, memory_layers=2, memory_ffn_dim=128,
        mask_interpol_size=128, name="fixture")


def test_tracker_config() -> TrackerConfig:
    """A tiny tracker for unit tests (8 x 8 grid). Memory width 64 and d_model 128 so that
    object pointers are split into two tokens and transformers can mirror it."""
    return TrackerConfig(
        image_size=112, vit_dim=32, d_model=128, mem_dim=64, memory_layers=2, memory_ffn_dim=256,
        mask_interpol_size=128, sam_mlp_dim=256, iou_head_hidden_dim=64, name="test")


def tiny_tracker_config() -> TrackerConfig:
    """The tracker of the ``tiny`` video model, sized for CPU training (about 1 M parameters
    with its neck): d_model 64 (the tiny detector's width, so the detector's neck can seed the
    tracker neck), 32-d memory (object pointers split into 2 tokens), 2 one-head memory-attention
    layers. Memories stay float32. Geometry (224 px, stride 8, 28 x 28 grid) comes from the
    detector (:func:`conceptseg.model.video_model.tracker_config_for`)."""
    return TrackerConfig(
        image_size=224, backbone_stride=8, vit_dim=128, d_model=64, mem_dim=32, memory_layers=2,
        memory_heads=1, memory_ffn_dim=256, mask_interpol_size=448, sam_mlp_dim=256,
        iou_head_hidden_dim=64, num_maskmem=7, store_memory_bf16=False, name="tiny")


TRACKER_PRESETS = {
    "sam3": sam3_tracker_config,
    "fixture": fixture_tracker_config,
    "tiny": tiny_tracker_config,
    "test": test_tracker_config,
}


def get_tracker_config(name: str) -> TrackerConfig:
    return preset(TRACKER_PRESETS, name, "tracker preset")
