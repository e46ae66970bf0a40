"""conceptseg: SAM 3 promptable concept segmentation in pure PyTorch.

>>> import conceptseg as cs
>>> model = cs.load()                      # the small model shipped in the package
>>> pred = cs.ImagePredictor(model).set_image("street.jpg")
>>> r = pred.predict(text="yellow school bus")
"""

from .build import build_model, load, load_video_model
from .checkpoint import CheckpointError, convert, save_checkpoint
from .config import Sam3Config, get_config
from .errors import ConceptSegError, InputError
from .inference.image import ImagePredictor
from .inference.results import Prediction
from .inference.video import VideoSession

__version__ = "0.1.0"
__all__ = ["build_model", "load", "load_video_model", "VideoSession", "convert", "save_checkpoint", "Sam3Config", "get_config",
           "ImagePredictor", "Prediction", "CheckpointError", "ConceptSegError", "InputError"]
