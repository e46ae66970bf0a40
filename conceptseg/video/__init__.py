"""Video I/O: lazy frame reading (``io``, ``source``, ``file_source``), the official
preprocessing (``preprocess``) and overlay writing (``writer``). Video inference (sessions and
the detection <-> track association) lives in :mod:`conceptseg.inference.video`."""

from ..errors import VideoInputError
from .io import open_video
from .preprocess import (preprocess_frame_cv2, preprocess_frame_folder,
                         preprocess_frame_torchcodec, to_model_input)
from .source import VideoSource
from .writer import write_overlay_video

__all__ = ["VideoInputError", "VideoSource", "open_video", "preprocess_frame_cv2",
           "preprocess_frame_folder", "preprocess_frame_torchcodec", "to_model_input",
           "write_overlay_video"]
