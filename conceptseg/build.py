"""One place that wires models: ``build_model`` (random weights) and ``load`` (weights)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_detector
from .config import PRESETS, Sam3Config, get_config
from .model.detector import Sam3Detector

DEFAULT_WEIGHTS = "tiny.safetensors"  # shipped in conceptseg/assets


def build_model(config: str | Sam3Config = "tiny", seed: int | None = None) -> Sam3Detector:
    """A model with freshly initialised weights (for training or tests)."""
    cfg = get_config(config) if isinstance(config, str) else config
    if seed is not None:
        torch.manual_seed(seed)
    return Sam3Detector(cfg).eval()


def default_weights_path() -> Path:
    return Path(str(resources.files("conceptseg") / "assets" / DEFAULT_WEIGHTS))


def load(path: str | os.PathLike | None = None, *, config: Sam3Config | str | None = None,
         device: str | torch.device = "cpu") -> Sam3Detector:
    """Load a model from a local checkpoint in any supported layout (official ``sam3.pt``,
    HF ``facebook/sam3`` safetensors or directory, or ours). With no path, the small model
    shipped inside the package."""
    if isinstance(config, str):
        config = get_config(config)
    if path is None:
        path = default_weights_path()
        if not path.exists():
            raise CheckpointError(f"the shipped default model is missing ({path}); reinstall "
                                  "conceptseg or pass a checkpoint path")
    return load_detector(path, config=config, device=device)


__all__ = ["build_model", "load", "PRESETS", "default_weights_path"]
