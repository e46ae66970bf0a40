"""Video: lazy frame reading / preprocessing / overlay writing (``io``) and the detection <->
track association of SAM 3 video inference (``association``)."""

from .io import (VideoInputError, VideoSource, open_video, preprocess_frame_cv2,
                 preprocess_frame_folder, preprocess_frame_torchcodec, to_model_input,
                 write_overlay_video)

__all__ = ["VideoInputError", "VideoSource", "open_video", "preprocess_frame_cv2",
           "preprocess_frame_folder", "preprocess_frame_torchcodec", "to_model_input",
           "write_overlay_video"]
