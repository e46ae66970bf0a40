"""What the synthetic engines can draw, and a wide list of words they never draw.

``ENGINE_WORDS``: the words of the engines' phrases (8 colours, 6 shapes, 2 sizes, 2 fills and
the generic nouns "object" / "shape"). ``out_of_vocabulary_words()``: a few thousand other
English words (nouns, adjectives, ...), taken deterministically from the CLIP BPE vocabulary
shipped in ``conceptseg/assets``: whole-word tokens (merges ending in ``</w>``), alphabetic,
at least 3 letters, in merge order (most frequent first), minus the engine's words, their
plurals and synonyms (``EXCLUDED``), function words and the 200 nouns of
:func:`measure_nouns` (held out: presence on them measures what training did not show). The
list also holds word pieces that BPE keeps as word endings ("ing", "ation"): harmless as
negatives, they are words the engines never draw either. They train and measure "presence near
0 for what the model was never taught" (issue 14, item 7): ``--oov-negatives P`` turns a share
``P`` of the training negatives into phrases with such words (:func:`replace_negatives`).
"""

from __future__ import annotations

import gzip
import re
from functools import lru_cache
from importlib import resources

import numpy as np

from .phrases import COLORS, FILLS, GENERIC_NOUNS, SHAPES, SIZES

__all__ = ["ENGINE_WORDS", "EXCLUDED", "out_of_vocabulary_words", "is_in_vocabulary",
           "oov_phrase", "replace_negatives", "NUM_OOV_WORDS", "measure_nouns"]

ENGINE_WORDS: frozenset[str] = frozenset(SIZES + FILLS + COLORS + SHAPES + GENERIC_NOUNS)
NUM_OOV_WORDS = 4000  # size of the list (the most frequent qualifying BPE words)
_NUM_MERGES = 49152 - 256 - 2  # the merges CLIP uses (as conceptseg.text.tokenizer)

#: words too close to the vocabulary to be called absent: plurals, synonyms, near colour names
EXCLUDED: frozenset[str] = frozenset("""
objects shapes circles squares triangles stars hexagons crosses reds greens blues yellows oranges
purples whites blacks sizes fills stripes stripe stripy stripey streak streaks lined lines banded
band bands plain filled solids
big bigger biggest tiny little large larger largest small smaller smallest huge giant massive mini
medium short tall long wide narrow
thing things item items figure figures form forms piece pieces element elements icon icons symbol
symbols sign signs emblem badge logo token tokens dot dots spot spots blob blobs mark marks
round ring rings disc disk discs disks oval ovals ellipse circular rectangle rectangular box boxes
block blocks tile tiles cube cubes diamond diamonds pentagon octagon polygon polygons hexagonal
triangular square plus asterisk sparkle starry geometric geometry tri
crimson scarlet maroon burgundy ruby cherry rose rosy pink navy azure cobalt cyan sky violet
lavender lilac magenta indigo amber gold golden lemon tangerine ivory snow cream ebony jet
charcoal onyx lime olive emerald jade mint teal turquoise aqua sapphire plum grape mauve
amethyst coral peach salmon brown grey gray silver beige tan colour color colors colours
colored coloured colorful colourful dark light bright pale
""".split())

#: function words and fillers, never a concept
_STOP: frozenset[str] = frozenset("""
the and for with you your are was were has have had not but this that these those from they them
their there here what when where which who whom whose why how all any each every few more most
other some such only own same than too very can will just should now its our out off over under
again further then once into onto upon about above below after before between through during
his her him she hers mine ours yours itself myself yourself himself herself themselves also
been being does did doing would could might must shall may get got let lets yes yeah okay via
per etc amp http https www com
""".split())


@lru_cache(maxsize=1)
def _bpe_words() -> tuple[str, ...]:
    path = resources.files("conceptseg").joinpath("assets", "bpe_simple_vocab_16e6.txt.gz")
    with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[1: _NUM_MERGES + 1]
    words = []
    for line in lines:
        a, _, b = line.partition(" ")
        tok = a + b
        if tok.endswith("</w>"):
            words.append(tok[:-4])
    return tuple(words)


@lru_cache(maxsize=4)
def out_of_vocabulary_words(limit: int = NUM_OOV_WORDS) -> tuple[str, ...]:
    """The first ``limit`` qualifying whole-word BPE tokens, in merge order (deterministic)."""
    out, seen = [], set(measure_nouns())  # the measurement's nouns stay held out of training
    for w in _bpe_words():
        if (len(w) < 3 or not w.isascii() or not w.isalpha() or w in seen or w in ENGINE_WORDS
                or w in EXCLUDED or w in _STOP):
            continue
        seen.add(w)
        out.append(w)
        if len(out) == limit:
            break
    return tuple(out)


def is_in_vocabulary(phrase: str) -> tuple[bool, list[str]]:
    """(every word is one the engines draw, the words that are not), e.g.
    ``is_in_vocabulary("red board") == (False, ["board"])``."""
    words = re.findall(r"[a-z]+", phrase.lower())
    unknown = [w for w in dict.fromkeys(words) if w not in ENGINE_WORDS]
    return (not unknown and bool(words)), unknown


def oov_phrase(rng: np.random.Generator) -> str:
    """A phrase naming something never drawn: one other word ("board"), or an engine attribute
    with another word ("red board", "striped board"); always a negative."""
    words = out_of_vocabulary_words()
    w = words[int(rng.integers(len(words)))]
    if rng.random() < 0.5:
        return w
    attrs = COLORS + SIZES + FILLS
    return f"{attrs[int(rng.integers(len(attrs)))]} {w}"


def replace_negatives(queries: list[dict], rng: np.random.Generator, share: float) -> None:
    """In place: each negative query (presence 0) gets, with probability ``share``, the text of
    :func:`oov_phrase` instead of its engine phrase (targets stay empty)."""
    for q in queries:
        if float(q["presence"]) == 0.0 and rng.random() < share:
            q["text"] = oov_phrase(rng)


#: everyday concrete nouns for measuring presence on out-of-vocabulary phrases (each one a
#: whole-word CLIP token; :func:`measure_nouns` keeps the first 200 that qualify)
_MEASURE_CANDIDATES = """
board car dog cat tree house chair table phone book bottle cup glass window door bird fish
flower bag shoe hat shirt boat train plane bike bus truck horse cow sheep pig duck chicken
apple banana bread cake pizza sandwich egg cheese coffee tea milk water beer wine knife fork
spoon plate bowl lamp clock watch computer laptop keyboard mouse screen camera guitar piano
drum ball bat racket skateboard surfboard kite umbrella bench fence wall floor roof road street
bridge tower castle church river lake mountain hill beach ocean island forest garden field
grass leaf rock stone sand snow rain cloud moon sun person man woman child baby girl boy face
hand foot hair eye nose mouth ear arm leg head teeth finger dress jacket coat pants sock glove
scarf ring necklace bracelet wallet key lock candle mirror pillow bed sofa couch desk shelf
drawer cabinet oven fridge sink toilet bath towel soap brush comb bucket basket barrel ladder
hammer nail screw rope chain wheel engine tire helmet flag map letter envelope paper pen pencil
notebook newspaper magazine poster painting photo picture statue fountain elephant lion tiger
bear monkey zebra giraffe rabbit frog snake turtle spider bee butterfly ant whale dolphin
shark owl eagle penguin parrot horse cactus mushroom carrot potato tomato onion pepper corn
rice pasta soup salad burger cookie candy chocolate donut pie juice bicycle motorcycle
tractor rocket robot doll toy puzzle card coin money ticket trophy medal crown sword shield
bow arrow gun tent backpack suitcase stairs elevator kitchen bedroom office school hospital
library museum airport station circuit chip cable wire battery plug socket led antenna
""".split()


@lru_cache(maxsize=1)
def measure_nouns(count: int = 200) -> tuple[str, ...]:
    """``count`` everyday nouns outside the vocabulary, each a whole-word token of the CLIP BPE
    vocabulary (deterministic; "board" first)."""
    bpe = set(_bpe_words())
    out = [w for w in dict.fromkeys(_MEASURE_CANDIDATES)
           if w in bpe and w not in ENGINE_WORDS and w not in EXCLUDED]
    if len(out) < count:
        raise ValueError(f"only {len(out)} measurement nouns qualify, asked for {count}")
    return tuple(out[:count])
