"""The official SAM 3 video frame preprocessing, one function per official loader path.

Preprocessing (what the official ``sam3.model.io_utils`` does, checked on its fixture)
--------------------------------------------------------------------------------------
* **Frame folders / single images** (:func:`preprocess_frame_folder`): PIL
  ``resize((S, S), BILINEAR)`` (what ``torchvision.transforms.functional.resize`` does on a
  PIL image; PIL's filter is antialiased by construction) -> ``to_tensor`` (float32 / 255) ->
  float16 -> ``(x - 0.5) / 0.5`` computed in float16.  Frames are stored in float16 and cast
  to float32 before the backbone (:func:`to_model_input`).  Bit-exact with the fixture.
* **Video files, official default loader "cv2"** (:func:`preprocess_frame_cv2`): OpenCV
  decodes, ``cv2.resize(..., INTER_CUBIC)`` on the uint8 RGB frame, then float32
  ``(x - 0.5) / 0.5`` **without dividing by 255** (the official code really does this: inputs
  lie in [-1, 509]; upstream issue facebookresearch/sam3#493, unfixed in the snapshot we
  read).  We have no OpenCV: the resize is ``torch`` bicubic (a = -0.75, half-pixel centres,
  replicated border, no antialias) in float64, rounded half-to-even and clamped to uint8.
  Measured against ``opencv-python-headless`` 4.14 ``cv2.resize`` on random uint8 images
  (96x128, 480x640, 1080x1920, 2160x3840 -> 112/1008 squares): identical except about 1e-5 of
  the values, which differ by 1.  The tensor stays float32, as in the official code.
* **Video files, official "torchcodec" loader** (:func:`preprocess_frame_torchcodec`):
  ``F.interpolate(bicubic, align_corners=False)`` on the float32 frame (no rounding back to
  uint8) -> float16 -> ``/255`` -> ``(x - 0.5) / 0.5``, all in float16.

Which of the two file paths :meth:`VideoSource.preprocess` uses is ``open_video(...,
file_preprocessing=...)``; the default ``"cv2"`` is the official predictor's default.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import VideoInputError

__all__ = ["preprocess_frame_folder", "preprocess_frame_cv2", "preprocess_frame_torchcodec",
           "resize_cubic_uint8", "to_model_input"]


def _as_uint8_rgb(frame) -> np.ndarray:
    if isinstance(frame, Image.Image):
        frame = np.asarray(frame.convert("RGB"))
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise VideoInputError(f"expected an H x W x 3 uint8 frame, got {frame.dtype} {frame.shape}")
    return frame


def _tensor_hwc(frame: np.ndarray) -> torch.Tensor:
    # cached frames are read-only; torch warns on non-writable arrays, so copy those
    return torch.from_numpy(frame if frame.flags.writeable else frame.copy())


def preprocess_frame_folder(frame, image_size: int) -> torch.Tensor:
    """The official frame-folder path: ``(3, S, S)`` float16, values ``(x/255 - 0.5) / 0.5``.

    ``frame``: ``H x W x 3`` uint8 RGB array or a PIL image.
    """
    if isinstance(frame, Image.Image):
        img = frame.convert("RGB")
    else:
        img = Image.fromarray(_as_uint8_rgb(frame), mode="RGB")
    img = img.resize((image_size, image_size), Image.BILINEAR)
    x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
    x = x.to(torch.float16)
    half = torch.tensor(0.5, dtype=torch.float16)
    x -= half  # float16 arithmetic, as the official in-place ops on the float16 buffer
    x /= half
    return x


def resize_cubic_uint8(frame: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Emulation of ``cv2.resize(frame, (W, H), interpolation=cv2.INTER_CUBIC)`` on uint8.

    ``size`` is ``(H, W)``.  Bicubic (a = -0.75), half-pixel centres, replicated border, no
    antialias, computed in float64 then rounded half-to-even and clamped to [0, 255].
    """
    frame = _as_uint8_rgb(frame)
    h, w = size
    if frame.shape[:2] == (h, w):
        return frame.copy()  # cv2.resize copies when the size does not change
    t = _tensor_hwc(frame).permute(2, 0, 1)[None].to(torch.float64)
    out = F.interpolate(t, size=(h, w), mode="bicubic", align_corners=False)
    out = torch.round(out).clamp_(0, 255).to(torch.uint8)[0].permute(1, 2, 0)
    return np.ascontiguousarray(out.numpy())


def preprocess_frame_cv2(frame, image_size: int) -> torch.Tensor:
    """The official default video-file path (OpenCV loader): ``(3, S, S)`` **float32**.

    INTER_CUBIC resize to ``S x S`` on uint8, then ``(x - 0.5) / 0.5`` on the 0..255 values
    (the official code does not divide by 255 here; see the module docstring).
    """
    resized = resize_cubic_uint8(frame, (image_size, image_size))
    x = torch.from_numpy(resized).permute(2, 0, 1).to(torch.float32)
    half = torch.tensor(0.5, dtype=torch.float16)
    x -= half  # float32 tensor minus a float16 scalar tensor: float32, as in the official code
    x /= half
    return x.contiguous()


def preprocess_frame_torchcodec(frame, image_size: int) -> torch.Tensor:
    """The official "torchcodec" video-file path: ``(3, S, S)`` float16."""
    frame = _as_uint8_rgb(frame)
    t = _tensor_hwc(frame).permute(2, 0, 1).float()
    x = F.interpolate(t[None], size=(image_size, image_size), mode="bicubic",
                      align_corners=False)[0]
    x = x.half()
    x /= 255
    half = torch.tensor(0.5, dtype=torch.float16)
    x -= half
    x /= half
    return x


def to_model_input(frames: torch.Tensor) -> torch.Tensor:
    """Stored (float16) frames -> float32 backbone input, as the official model does."""
    return frames.to(torch.float32)


_PREPROCESS = {"folder": preprocess_frame_folder, "cv2": preprocess_frame_cv2,
               "torchcodec": preprocess_frame_torchcodec}
