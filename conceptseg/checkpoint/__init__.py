"""Loading and saving of image, video and tracker models in all three layouts (ours, official
``sam3.pt``, HF ``facebook/sam3``).

Reading ``load(path)``: :mod:`.load` (the entry) -> :mod:`.formats` (file format and layout,
detected in one place, into :class:`~.formats.Parts`) -> the layout's key table
(:mod:`.official`, :mod:`.hf`, :mod:`.hf_tracker`); configs not stored come from :mod:`.infer`.
Writing: :mod:`.save`.
"""

from ..errors import CheckpointError
from .formats import Parts, describe, read_checkpoint
from .infer import infer_config, infer_tracker_config
from .load import default_weights_path, load
from .save import convert, save, save_checkpoint, save_video_checkpoint

__all__ = ["CheckpointError", "Parts", "convert", "default_weights_path", "describe",
           "infer_config", "infer_tracker_config", "load", "read_checkpoint", "save",
           "save_checkpoint", "save_video_checkpoint"]
