"""conceptseg: SAM 3 promptable concept segmentation in pure PyTorch.

>>> import conceptseg as cs
>>> model = cs.load()                      # the small model shipped in the package
>>> pred = cs.ImagePredictor(model).set_image("street.jpg")
>>> r = pred.predict(text="yellow school bus")
"""

__version__ = "0.1.0"  # before the imports: the command line reads it while they run

from .build import build_model, load, load_video_model
from .checkpoint import convert, save_checkpoint
from .config import Sam3Config, get_config
from .errors import (CheckpointError, ConceptSegError, InputError, MissingDependencyError,
                     SessionError, VideoInputError)
from .inference.concept import Concept
from .inference.image import ImagePredictor
from .inference.results import ImageResult, Prediction, Refinement
from .inference.video import VideoSession
from .inference.video import AssociationConfig, FrameResult, VideoResults

__all__ = [
    # models and checkpoints
    "build_model", "load", "load_video_model", "convert", "save_checkpoint", "Sam3Config",
    "get_config",
    # images
    "ImagePredictor", "Prediction", "ImageResult", "Refinement", "Concept",
    # videos
    "VideoSession", "FrameResult", "VideoResults", "AssociationConfig",
    # errors
    "ConceptSegError", "InputError", "VideoInputError", "CheckpointError", "SessionError",
    "MissingDependencyError",
]
