"""Noun-phrase grammar for the synthetic concept data engine.

A *query* is a partial assignment of attribute values, e.g. ``{"color": "red", "shape": "star"}``.
Phrases are rendered in the canonical order size -> fill -> color -> shape; when no shape is given,
the generic noun ``object`` is used ("small red object").  ``parse_phrase`` inverts ``format_phrase``
(and also accepts the generic noun ``shape``).

Everything here is pure Python driven by a ``numpy.random.Generator`` so scene generation stays
deterministic.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

ATTRIBUTES: tuple[str, ...] = ("size", "fill", "color", "shape")
SIZES: tuple[str, ...] = ("small", "large")
FILLS: tuple[str, ...] = ("solid", "striped")
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "orange", "purple", "white", "black")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "cross")
VALUES: dict[str, tuple[str, ...]] = {"size": SIZES, "fill": FILLS, "color": COLORS, "shape": SHAPES}
GENERIC_NOUNS: tuple[str, ...] = ("object", "shape")

#: (color, shape) pairs never rendered in ``split="train"`` scenes (compositional generalisation).
DEFAULT_HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("red", "star"), ("blue", "hexagon"), ("yellow", "cross"), ("purple", "circle")}
)

_WORD_TO_ATTR: dict[str, str] = {v: a for a, vals in VALUES.items() for v in vals}

Query = dict[str, str]


class Datapoint(NamedTuple):
    """One (noun phrase, exhaustive list of matching instance / object indices) pair."""

    phrase: str
    instance_ids: tuple[int, ...]

    @property
    def presence(self) -> int:
        return int(len(self.instance_ids) > 0)

    @property
    def is_negative(self) -> bool:
        return len(self.instance_ids) == 0


def canonical_query(query: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Hashable canonical key of a query (attributes in canonical order)."""
    for a, v in query.items():
        if a not in VALUES or v not in VALUES[a]:
            raise ValueError(f"invalid attribute {a}={v}")
    return _key(query)


def _key(query: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((a, query[a]) for a in ATTRIBUTES if a in query)


def format_phrase(query: Mapping[str, str], generic_noun: str = "object") -> str:
    """``{"shape": "star", "color": "red", "size": "small"}`` -> ``"small red star"``."""
    key = canonical_query(query)
    if not key:
        raise ValueError("empty query")
    words = [v for a, v in key if a != "shape"]
    words.append(query.get("shape", generic_noun))
    return " ".join(words)


def parse_phrase(phrase: str) -> Query:
    """Inverse of :func:`format_phrase` (accepts 'object' / 'shape' as generic nouns)."""
    query: Query = {}
    for w in phrase.strip().lower().split():
        if w in GENERIC_NOUNS:
            continue
        if w not in _WORD_TO_ATTR:
            raise ValueError(f"unknown word {w!r} in phrase {phrase!r}")
        a = _WORD_TO_ATTR[w]
        if a in query:
            raise ValueError(f"attribute {a} given twice in {phrase!r}")
        query[a] = w
    if not query:
        raise ValueError(f"phrase {phrase!r} specifies no attribute")
    return query


def matches(query: Mapping[str, str], attributes: Mapping[str, str]) -> bool:
    return all(attributes.get(a) == v for a, v in query.items())


def matching_indices(query: Mapping[str, str], objects: Sequence[Mapping[str, str]]) -> tuple[int, ...]:
    return tuple(i for i, attrs in enumerate(objects) if matches(query, attrs))


def mentions_pair(query: Mapping[str, str], pairs: Iterable[tuple[str, str]]) -> bool:
    """True when the query names both the colour and the shape of one of ``pairs``."""
    if "color" not in query or "shape" not in query:
        return False
    return (query["color"], query["shape"]) in set(pairs)


_SUBSETS: dict[int, list[tuple[str, ...]]] = {
    m: [c for k in range(1, m + 1) for c in itertools.combinations(ATTRIBUTES, k)] for m in range(1, 5)
}


def positive_queries(objects: Sequence[Mapping[str, str]], max_attributes: int) -> list[Query]:
    """All distinct queries (1..max_attributes attributes) that match at least one object (sorted)."""
    subsets = _SUBSETS[min(max_attributes, len(ATTRIBUTES))]
    seen = {tuple((a, attrs[a]) for a in sub) for attrs in objects for sub in subsets}
    return [dict(k) for k in sorted(seen)]


def _pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def sample_positive_queries(
    rng: np.random.Generator,
    objects: Sequence[Mapping[str, str]],
    num: int,
    max_attributes: int,
    must_include: Sequence[Query] = (),
    pool: Sequence[Query] | None = None,
) -> list[Query]:
    """Sample ``num`` distinct positive queries, roughly uniform over the number of attributes.

    ``must_include`` queries (if present in the scene) come first.  ``pool``: precomputed
    ``positive_queries(objects, max_attributes)``.
    """
    pool = pool if pool is not None else positive_queries(objects, max_attributes)
    chosen: list[Query] = []
    used: set[tuple] = set()
    for q in must_include:
        key = _key(q)
        if key not in used and len(q) <= max_attributes and matching_indices(q, objects):
            used.add(key)
            chosen.append(dict(q))
    by_level: dict[int, list[Query]] = {}
    for q in pool:
        if _key(q) not in used:
            by_level.setdefault(len(q), []).append(q)
    while len(chosen) < num and by_level:
        k = _pick(rng, sorted(by_level))
        cands = by_level[k]
        q = cands.pop(int(rng.integers(len(cands))))
        if not cands:
            del by_level[k]
        chosen.append(q)
    return chosen


def _allowed(query: Query, objects, excluded_pairs, used: set) -> bool:
    return (
        _key(query) not in used
        and not matching_indices(query, objects)
        and not mentions_pair(query, excluded_pairs)
    )


def hard_negative(
    rng: np.random.Generator,
    objects: Sequence[Mapping[str, str]],
    max_attributes: int,
    excluded_pairs: Iterable[tuple[str, str]] = (),
    used: set | None = None,
    tries: int = 32,
    pool: Sequence[Query] | None = None,
) -> Query | None:
    """One-attribute swap of a present concept that matches no object (e.g. 'blue star' next to a red star).

    ``pool``: precomputed ``positive_queries(objects, max_attributes)``.
    """
    used = used if used is not None else set()
    excluded_pairs = set(excluded_pairs)
    pool = pool if pool is not None else positive_queries(objects, max_attributes)
    multi = [q for q in pool if len(q) >= 2]
    for t in range(tries):
        # prefer swaps of multi-attribute concepts: those are the confusable ones
        src = _pick(rng, multi if multi and t < tries // 2 else pool)
        attr = _pick(rng, list(_key(src)))[0]
        others = [v for v in VALUES[attr] if v != src[attr]]
        q = dict(src)
        q[attr] = _pick(rng, others)
        if _allowed(q, objects, excluded_pairs, used):
            return q
    return None


def easy_negative(
    rng: np.random.Generator,
    objects: Sequence[Mapping[str, str]],
    max_attributes: int,
    excluded_pairs: Iterable[tuple[str, str]] = (),
    used: set | None = None,
    tries: int = 64,
) -> Query | None:
    """A random concept (1..max_attributes attributes) with no matching object."""
    used = used if used is not None else set()
    excluded_pairs = set(excluded_pairs)
    for _ in range(tries):
        k = int(rng.integers(1, min(max_attributes, len(ATTRIBUTES)) + 1))
        attrs = sorted(rng.choice(len(ATTRIBUTES), size=k, replace=False).tolist())
        q = {ATTRIBUTES[i]: _pick(rng, VALUES[ATTRIBUTES[i]]) for i in attrs}
        if _allowed(q, objects, excluded_pairs, used):
            return q
    return None


def sample_negative_queries(
    rng: np.random.Generator,
    objects: Sequence[Mapping[str, str]],
    num: int,
    max_attributes: int,
    mode: str = "mixed",
    excluded_pairs: Iterable[tuple[str, str]] = (),
    pool: Sequence[Query] | None = None,
) -> list[Query]:
    """Sample up to ``num`` distinct queries with zero matching objects.

    ``mode``: 'easy' (random absent concepts), 'hard' (one-attribute swaps of present concepts),
    'mixed' (each negative is hard or easy with probability 1/2).
    """
    if mode not in ("easy", "hard", "mixed"):
        raise ValueError(f"negative_mode must be easy|hard|mixed, got {mode!r}")
    excluded_pairs = set(excluded_pairs)
    out: list[Query] = []
    used: set[tuple] = set()
    if pool is None:
        pool = positive_queries(objects, max_attributes)
    for _ in range(num):
        hard = mode == "hard" or (mode == "mixed" and rng.random() < 0.5)
        q = None
        if hard and pool:
            q = hard_negative(rng, objects, max_attributes, excluded_pairs, used, pool=pool)
        if q is None:
            q = easy_negative(rng, objects, max_attributes, excluded_pairs, used)
        if q is None:
            continue
        used.add(_key(q))
        out.append(q)
    return out


def make_datapoints(
    rng: np.random.Generator,
    objects: Sequence[Mapping[str, str]],
    num_positive: int,
    num_negative: int,
    max_attributes: int,
    negative_mode: str,
    excluded_pairs: Iterable[tuple[str, str]] = (),
    must_include: Sequence[Query] = (),
) -> list[Datapoint]:
    """Positive datapoints (with exhaustive matching indices) followed by negatives."""
    pool = positive_queries(objects, max_attributes)
    pos = sample_positive_queries(rng, objects, num_positive, max_attributes, must_include, pool=pool)
    neg = sample_negative_queries(rng, objects, num_negative, max_attributes, negative_mode, excluded_pairs, pool)
    dps = [Datapoint(format_phrase(q), matching_indices(q, objects)) for q in pos]
    dps += [Datapoint(format_phrase(q), ()) for q in neg]
    return dps
