"""Dataclass configs for every model size.

One model definition serves every size: the full SAM 3 (``sam3``), the official random-weight
fixture (``fixture``), the shipped small model (``tiny``) and a unit-test model (``test``) are all
presets of :class:`Sam3Config`. Every size is a field, so a checkpoint in our own format carries
its config and can always be rebuilt.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError


@dataclass
class VisionConfig:
    image_size: int = 1008  # input side in pixels; the image is squashed to a square
    patch_size: int = 14  # conv patch embedding, stride = kernel
    pretrain_image_size: int = 336  # pos_embed grid = (this / patch)^2 (+1 cls slot), tiled
    width: int = 1024
    depth: int = 32
    heads: int = 16
    mlp_ratio: float = 4.625  # MLP hidden = int(width * mlp_ratio)
    window_size: int = 24  # windowed blocks attend within window x window tokens
    global_blocks: tuple[int, ...] = (7, 15, 23, 31)  # blocks with global attention
    rope_theta: float = 10000.0
    layer_norm_eps: float = 1e-5  # official 1e-5 (transformers defaults to 1e-6)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


@dataclass
class TextConfig:
    width: int = 1024
    layers: int = 24
    heads: int = 16
    mlp_ratio: float = 4.0
    context_length: int = 32  # tokens incl. SOT/EOT; longer prompts are truncated
    vocab_size: int = 49408
    projection_dim: int = 512  # text_projection exists in the checkpoint but is unused


@dataclass
class Sam3Config:
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    d_model: int = 256  # width of neck, prompt, fusion encoder, decoder and heads
    heads: int = 8  # attention heads of geometry encoder, fusion encoder, decoder, mask head
    ffn_dim: int = 2048  # FFN hidden size of those transformers
    dropout: float = 0.1  # training only
    geometry_layers: int = 3
    encoder_layers: int = 6  # fusion encoder
    decoder_layers: int = 6
    num_queries: int = 200
    roi_size: int = 7  # RoI-Align output side for exemplar boxes
    dot_mlp_hidden: int = 2048  # hidden size of the dot-product scorer's prompt MLP
    # FPN levels built by the neck; the last (0.5x) is computed by the official model and then
    # dropped ("scalp"), so it is built for weight compatibility and skipped at run time.
    neck_scales: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)
    scalp: int = 1
    pixel_decoder_stages: int = 3  # built; only len(levels) - 1 of them run
    presence_clamp: float | None = None  # official: no clamp (the intended +-10 is a no-op)
    logit_clamp: float = 12.0  # dot-product scores are clamped to +-this
    # added to every query logit before the clamp; official models: 0. Our shipped model sets it
    # by calibration on validation scenes (conceptseg/train/calibrate.py)
    score_bias: float = 0.0
    name: str = "custom"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Sam3Config":
        d = dict(d)
        vision = VisionConfig(**_tuples(d.pop("vision", {})))
        text = TextConfig(**d.pop("text", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        return cls(vision=vision, text=text, **_tuples(d))


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; turn them back so configs compare equal."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def sam3_config() -> Sam3Config:
    """The full SAM 3 image model (840.5 M parameters)."""
    return Sam3Config(name="sam3")


def fixture_config() -> Sam3Config:
    """The sizes of ``shared/reference/official_small`` (official code, random weights)."""
    return Sam3Config(
        vision=VisionConfig(
            image_size=112, patch_size=14, pretrain_image_size=56, width=64, depth=4, heads=4,
            mlp_ratio=4.625, window_size=4, global_blocks=(1, 3),
        ),
        text=TextConfig(width=64, layers=2, heads=4, context_length=32),
        d_model=64, heads=8, ffn_dim=128, geometry_layers=1, encoder_layers=2, decoder_layers=2,
        num_queries=20, dot_mlp_hidden=128, name="fixture",
    )


def tiny_config() -> Sam3Config:
    """The small model trained on synthetic data and shipped in the package (~5 M parameters).

    Sized for CPU training (see conceptseg/train/RECIPE.md): 8 px patches give small shapes
    (22-31 px) 3-4 tokens across in the ViT; the neck's levels are 2x, 1x and 0.5x of that
    28 x 28 grid and none is dropped (scalp 0), so the per-prompt fusion encoder and decoder
    run on the 14 x 14 (0.5x) level while masks come out at 56 x 56.
    """
    return Sam3Config(
        vision=VisionConfig(
            image_size=224, patch_size=8, pretrain_image_size=224, width=128, depth=4, heads=4,
            mlp_ratio=4.0, window_size=7, global_blocks=(1, 3),
        ),
        text=TextConfig(width=64, layers=2, heads=4, context_length=32, projection_dim=64),
        d_model=64, heads=4, ffn_dim=256, dropout=0.0, geometry_layers=1, encoder_layers=3,
        decoder_layers=3, num_queries=24, dot_mlp_hidden=256, neck_scales=(2.0, 1.0, 0.5),
        scalp=0, pixel_decoder_stages=2, name="tiny",
    )


def test_config() -> Sam3Config:
    """A very small model for unit tests: runs end to end in milliseconds."""
    return Sam3Config(
        vision=VisionConfig(
            image_size=56, patch_size=14, pretrain_image_size=28, width=32, depth=2, heads=2,
            mlp_ratio=2.0, window_size=2, global_blocks=(1,),
        ),
        text=TextConfig(width=32, layers=1, heads=2, context_length=32, projection_dim=16),
        d_model=32, heads=4, ffn_dim=64, geometry_layers=1, encoder_layers=1, decoder_layers=2,
        num_queries=8, dot_mlp_hidden=64, name="test",
    )


PRESETS = {
    "sam3": sam3_config,
    "fixture": fixture_config,
    "tiny": tiny_config,
    "test": test_config,
}


def preset(table: dict, name: str, what: str = "preset"):
    """``table[name]()`` or a one-line InputError naming the choices (model and tracker presets)."""
    try:
        return table[name]()
    except KeyError:
        raise InputError(f"unknown {what} {name!r}; choose one of {sorted(table)}") from None


def get_config(name: str) -> Sam3Config:
    return preset(PRESETS, name)
