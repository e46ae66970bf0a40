"""Video: lazy frame reading (``io``, ``source``, ``file_source``), the official preprocessing
(``preprocess``), overlay writing (``writer``) and the detection <-> track association of SAM 3
video inference (``association``, with ``matching``, ``heuristics`` and ``postprocess``)."""

from ..errors import VideoInputError
from .io import open_video
from .preprocess import (preprocess_frame_cv2, preprocess_frame_folder,
                         preprocess_frame_torchcodec, to_model_input)
from .source import VideoSource
from .writer import write_overlay_video

__all__ = ["VideoInputError", "VideoSource", "open_video", "preprocess_frame_cv2",
           "preprocess_frame_folder", "preprocess_frame_torchcodec", "to_model_input",
           "write_overlay_video"]
