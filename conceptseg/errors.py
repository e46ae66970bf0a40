"""The one error hierarchy. Everything a caller can cause derives from :class:`ConceptSegError`;
its message is meant for the user as one line (CLI: stderr + exit status 2; server: a 4xx with a
JSON body; MCP: a tool error), no traceback needed.

    ConceptSegError
    ├── InputError (also a ValueError)        bad user input: image, prompt, box, option
    │   ├── ImageTooLargeError                an image above the pixel limit (from its header)
    │   ├── VideoInputError                   a video, frame folder or frame index
    │   └── EvalInputError                    malformed ground truth or predictions
    ├── CheckpointError (also a ValueError)   a checkpoint that cannot be used
    │   └── NoTrackerError                    a video model asked of an image-only checkpoint
    ├── SessionError (also a RuntimeError)    a session used out of order (closed, re-prompted)
    ├── ServeError                            a server refusal: a limit, a full queue, a timeout,
    │                                         an unknown session (carries the HTTP status)
    └── MissingDependencyError (ImportError)  an optional extra that is not installed
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ConceptSegError", "InputError", "ImageTooLargeError", "VideoInputError", "EvalInputError", "CheckpointError",
           "NoTrackerError", "SessionError", "MissingDependencyError", "ServeError"]


class ConceptSegError(Exception):
    """Base class: the message is meant for the user, no traceback needed."""


class InputError(ConceptSegError, ValueError):
    """Bad user input: an unreadable image, an absurd prompt, a box outside the image..."""


class VideoInputError(InputError):
    """A video (file, frame folder, frame index) that cannot be used."""


class ImageTooLargeError(InputError):
    """An image whose header names more pixels than the limit (refused before decoding)."""


class EvalInputError(InputError):
    """Malformed ground truth or predictions.  ``index`` / ``entry_id`` name the entry."""

    def __init__(self, message: str, index: int | None = None, entry_id: Any = None):
        super().__init__(message)
        self.index = index
        self.entry_id = entry_id


class CheckpointError(ConceptSegError, ValueError):
    """A checkpoint that cannot be used, with a one-line reason."""


class NoTrackerError(CheckpointError):
    """A video model was asked of a checkpoint that holds an image model only."""


class SessionError(ConceptSegError, RuntimeError):
    """A session used out of order: closed, re-prompted under a running pass, two passes at once."""


class MissingDependencyError(ConceptSegError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def require(module: str, extra: str):
    """Import an optional dependency or raise :class:`MissingDependencyError` naming its extra
    (``pip install 'conceptseg[extra]'``)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"{module} is not installed: pip install "
                                     f"'conceptseg[{extra}]'") from None


class ServeError(ConceptSegError):
    """A request the server refuses whatever its content's meaning: above a limit (413), an
    unknown or expired session (404), too many sessions or a full queue (429), a timeout (504).
    ``status`` is the HTTP status, ``code`` the error body's code, ``retry_after`` seconds."""

    def __init__(self, message: str, status: int, code: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.retry_after = status, code, retry_after
