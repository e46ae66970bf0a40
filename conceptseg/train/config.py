"""The configuration of a detector run (``conceptseg train --stage detect|pretrain``), saved
as ``train_config.json`` and checked before any work."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..data.splits import TRAIN_SEED
from ..errors import InputError
from .losses import LossWeights

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Everything a detector or pretraining run needs besides the model (train_config.json)."""

    out: str = "runs/train"
    stage: str = "detect"  # 'detect' | 'pretrain'
    data: str = "synthetic"  # 'synthetic' or a COCO / SA-Co JSON path
    images: str | None = None  # image folder of a COCO JSON (default: the JSON's folder)
    skip_bad: bool = False
    steps: int = 1000  # total optimizer steps (for COCO data: see epochs)
    epochs: int | None = None  # COCO data: total epochs (overrides steps)
    batch_images: int = 8
    phrases_per_image: int = 4
    lr: float = 3e-4
    backbone_lr_mult: float = 1.0  # lr multiplier of the vision trunk and the text encoder
    warmup: int = 200
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    clip: float = 0.1  # max grad norm; 0 = off
    bf16: bool = False
    freeze: tuple[str, ...] = ()
    curriculum: str | None = None
    dac: bool = False  # one-to-many DAC queries (needs loss.o2m_k > 0)
    dn: bool = False  # recognition queries at jittered boxes of every instance (synthetic data)
    exemplars: float = 0.0  # share of synthetic rows prompted with an exemplar box
    stop_at: int | None = None  # end this invocation at this step (the schedule still uses steps)
    attr_aux: float = 0.0  # weight of per-token attribute classification on the ViT (synthetic)
    randomize: bool = False  # domain randomisation of the synthetic scenes (data/randomize.py)
    oov_negatives: float = 0.0  # share of negative phrases with out-of-vocabulary words (data/vocabulary.py)
    seed: int = TRAIN_SEED
    checkpoint_every: int = 200
    snapshot_every: int = 0
    log_every: int = 10
    eval_every: int = 0
    eval_images: int = 48
    threads: int = 2
    workers: int = 0  # data processes rendering batches ahead (0: in the training process)
    time_limit: float | None = None  # minutes: checkpoint and stop once this much time has passed
    device: str = "cpu"
    progress: bool = True
    loss: LossWeights = field(default_factory=LossWeights)

    def validate(self) -> None:
        """One-line errors for options that would silently do something else."""
        if self.stage not in ("detect", "pretrain"):
            raise InputError(f"unknown stage {self.stage!r}; use detect or pretrain")
        if self.steps <= 0:
            raise InputError("--steps must be positive")
        if self.epochs is not None and self.epochs <= 0:
            raise InputError("--epochs must be positive")
        if self.epochs is not None and self.data == "synthetic":
            raise InputError("--epochs counts passes over a COCO / SA-Co JSON; synthetic data is "
                             "an endless stream: use --steps")
        if self.batch_images <= 0 or self.phrases_per_image <= 0:
            raise InputError("--batch-images and --phrases-per-image must be positive")
        if self.stage == "pretrain" and self.data != "synthetic":
            raise InputError("--stage pretrain needs --data synthetic (it uses attribute labels)")
        if self.attr_aux > 0 and self.data != "synthetic":
            raise InputError("--attr-aux needs --data synthetic (it uses attribute labels)")
        if (self.randomize or self.oov_negatives > 0) and self.data != "synthetic":
            raise InputError("--randomize and --oov-negatives need --data synthetic")
        if not 0.0 <= self.oov_negatives <= 1.0:
            raise InputError(f"--oov-negatives must be within [0, 1], got {self.oov_negatives}")
        for name in ("checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise InputError(f"--{name.replace('_', '-')} must be positive")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["freeze"] = list(self.freeze)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        loss = LossWeights.from_dict(d.pop("loss", {}))
        d["freeze"] = tuple(d.get("freeze", ()))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known}, loss=loss)
