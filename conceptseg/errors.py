"""Errors that reach users as one clear line (CLI: stderr + non-zero exit; server: 4xx JSON)."""


class ConceptSegError(Exception):
    """Base class: the message is meant for the user, no traceback needed."""


class InputError(ConceptSegError, ValueError):
    """Bad user input: an unreadable image, an absurd prompt, a box outside the image..."""
