"""Request fields -> validated prompts, before any model work: phrases (count and length
limits), exemplar boxes (the multipart ``"x0,y0,x1,y1[:pos|neg]"`` form and the JSON
``[x0, y0, x1, y1, label]`` form), clipped to the image when they lie partly outside it."""

from __future__ import annotations

from ..errors import InputError
from ..inference.prompts import parse_label, validate_text

Exemplar = tuple[tuple[float, float, float, float], bool]  # pixel xyxy, positive


def check_texts(texts, max_chars: int, max_count: int, allow_none: bool = False) -> list:
    """Phrases, each non-empty and at most ``max_chars`` characters; ``[None]`` when there are
    none and ``allow_none`` (exemplars only)."""
    texts = list(texts or [])
    if not texts:
        if allow_none:
            return [None]
        raise InputError("give at least one text prompt")
    if len(texts) > max_count:
        raise InputError(f"{len(texts)} phrases in one request; the limit is {max_count}")
    out = []
    for t in texts:
        if isinstance(t, str) and len(t) > max_chars:
            raise InputError(f"prompt has {len(t):,} characters; the limit is {max_chars} "
                             "(--max-prompt-chars)")
        out.append(validate_text(t))
    return out


def parse_exemplar_spec(spec: str) -> Exemplar:
    """``"x0,y0,x1,y1"`` or ``"x0,y0,x1,y1:neg"`` (``:pos``, ``:+``, ``:-``) -> exemplar."""
    coords, _, label = str(spec).partition(":")
    parts = coords.split(",")
    if len(parts) != 4:
        raise InputError(f"exemplar {spec[:80]!r}: expected x0,y0,x1,y1[:pos|neg]")
    return parse_exemplar_row(parts + [label or "pos"], f"exemplar {spec[:80]!r}")


def parse_exemplar_row(row, what: str | None = None) -> Exemplar:
    """``[x0, y0, x1, y1]`` or ``[x0, y0, x1, y1, label]`` (label pos/neg, 1/0, true/false)."""
    what = what or f"exemplar {str(row)[:80]}"
    if not isinstance(row, (list, tuple)) or len(row) not in (4, 5):
        raise InputError(f"{what}: expected x0,y0,x1,y1 and a pos/neg label")
    try:
        box = tuple(float(v) for v in row[:4])
    except (TypeError, ValueError):
        raise InputError(f"{what}: coordinates must be numbers") from None
    return box, parse_label(row[4] if len(row) == 5 else True, f"{what} label")  # type: ignore


