"""Errors of video reading, preprocessing and writing."""

from __future__ import annotations

from ..errors import InputError

__all__ = ["VideoInputError"]


class VideoInputError(InputError):
    """A video (file, frame folder, frame index) that cannot be used."""
