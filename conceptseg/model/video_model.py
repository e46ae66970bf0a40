"""The SAM 3 video model: the detector (image model) plus the tracker and its neck.

The tracker has no backbone of its own: its neck (``sam2_convs``, a separately trained copy of
the detector's SimpleFPN) reads the same ViT trunk output as the detector's neck, so a frame goes
through the trunk once (:meth:`VideoModel.encode_frame`).

Checkpoints (what :func:`conceptseg.build.load_video_model` reads and
:func:`conceptseg.build.save_video_checkpoint` writes) are described in
:mod:`conceptseg.checkpoint.formats`.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from ..config import Sam3Config
from ..errors import InputError
from ..model.detector import ImageFeatures, Sam3Detector
from ..tracker.config import TrackerConfig, get_tracker_config
from ..tracker.neck import TrackerNeck
from ..tracker.tracker import Tracker, TrackerFeatures


def tracker_config_for(detector_config: Sam3Config, base: TrackerConfig) -> TrackerConfig:
    """``base`` with its geometry taken from the detector: the tracker reads the detector's ViT
    trunk, so its image size, stride and input width are the detector's; the memory encoder's
    mask size follows (grid x total downsampler stride, 1152 for the full model)."""
    v = detector_config.vision
    grid = v.image_size // v.patch_size
    return dataclasses.replace(base, image_size=v.image_size, backbone_stride=v.patch_size,
                               vit_dim=v.width,
                               mask_interpol_size=grid * base.mask_downsampler_total_stride)


def resolve_tracker_config(tracker_config: TrackerConfig | str | None,
                           detector_config: Sam3Config) -> TrackerConfig:
    """A TrackerConfig as given, or the preset named (geometry from the detector); None: the
    preset that pairs with the detector (the full model with the official tracker, tiny with
    tiny, fixture with fixture, any other with the unit-test tracker sizes)."""
    if tracker_config is None:
        tracker_config = {"sam3": "sam3", "fixture": "fixture",
                          "tiny": "tiny"}.get(detector_config.name, "test")
    if isinstance(tracker_config, str):
        try:
            return tracker_config_for(detector_config, get_tracker_config(tracker_config))
        except ValueError as e:
            raise InputError(str(e)) from None
    if not isinstance(tracker_config, TrackerConfig):
        raise InputError("tracker_config must be a preset name or a TrackerConfig")
    return tracker_config


def check_compatible(detector_config: Sam3Config, tracker_config: TrackerConfig) -> None:
    """Raise ValueError if the tracker cannot read this detector's trunk."""
    v, t = detector_config.vision, tracker_config
    problems = []
    if t.image_size != v.image_size:
        problems.append(f"image size {t.image_size} vs the detector's {v.image_size}")
    if t.backbone_stride != v.patch_size:
        problems.append(f"stride {t.backbone_stride} vs the detector's patch {v.patch_size}")
    if t.vit_dim != v.width:
        problems.append(f"neck input width {t.vit_dim} vs the detector's ViT width {v.width}")
    if tuple(t.neck_scales[:3]) != (4.0, 2.0, 1.0) or len(t.neck_scales) - t.scalp < 3:
        problems.append(f"neck scales {t.neck_scales} (scalp {t.scalp}): the tracker needs the "
                        "4x, 2x and 1x levels")
    if t.mask_interpol_size != t.grid * t.mask_downsampler_total_stride:
        problems.append(f"memory mask size {t.mask_interpol_size} does not land on the "
                        f"{t.grid} x {t.grid} grid")
    if problems:
        raise ValueError("tracker config does not fit the detector: " + "; ".join(problems))


class VideoModel(nn.Module):
    """Detector + tracker neck + tracker, sharing the detector's ViT trunk.

    >>> model = conceptseg.build.load_video_model("sam3.pt")          # doctest: +SKIP
    >>> with VideoSession(model, "clip.mp4") as s: ...                # doctest: +SKIP
    """

    def __init__(self, detector: Sam3Detector, tracker: Tracker, neck: TrackerNeck):
        super().__init__()
        check_compatible(detector.config, tracker.cfg)
        self.detector = detector
        self.tracker = tracker
        self.neck = neck

    @property
    def config(self) -> Sam3Config:
        return self.detector.config

    @property
    def tracker_config(self) -> TrackerConfig:
        return self.tracker.cfg

    @property
    def device(self):
        return next(self.detector.parameters()).device

    def trunk(self, images: Tensor) -> Tensor:
        """images B x 3 x S x S (normalised to [-1, 1]) -> ViT output B x width x g x g."""
        return self.detector.backbone.vision_backbone.trunk(images)

    def detector_features(self, trunk_out: Tensor) -> ImageFeatures:
        return ImageFeatures(*self.detector.backbone.vision_backbone.fpn(trunk_out))

    def tracker_features(self, trunk_out: Tensor) -> TrackerFeatures:
        return self.tracker.prepare_features(*self.neck(trunk_out))

    def encode_frame(self, images: Tensor) -> tuple[ImageFeatures, TrackerFeatures]:
        """One trunk pass, both necks: (detector pyramid, tracker features)."""
        trunk_out = self.trunk(images)
        return self.detector_features(trunk_out), self.tracker_features(trunk_out)
