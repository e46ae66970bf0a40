"""CLIP byte-level BPE tokenizer, behaving exactly like SAM 3's ``SimpleTokenizer``.

Pipeline for one prompt:

1. clean: ``ftfy.fix_text`` -> ``html.unescape`` twice -> strip -> collapse whitespace
   runs to one space -> strip -> lower-case;
2. split into words with the CLIP regex (letters runs, single digits, punctuation runs,
   English contractions);
3. map each word's UTF-8 bytes to printable unicode characters (the GPT-2/CLIP byte
   table), then apply BPE merges greedily by rank, the last symbol carrying ``</w>``;
4. wrap in start/end ids and zero-pad to ``context_length``.
"""

from __future__ import annotations

import gzip
import html
from functools import lru_cache
from importlib import resources
from os import PathLike

import ftfy
import regex
import torch

# SAM 3 (via open_clip) names the special tokens "<start_of_text>"/"<end_of_text>", not
# OpenAI's "<|startoftext|>"; the ids are the same (the last two vocab slots). The name only
# matters when a prompt literally contains it: then it becomes the special id, as upstream.
SOT, EOT = "<start_of_text>", "<end_of_text>"
SOT_ID, EOT_ID = 49406, 49407
NUM_MERGES = 49152 - 256 - 2  # 48,894: the file holds more merges than CLIP ever used

_WORD_RE = regex.compile(
    rf"{SOT}|{EOT}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
    regex.IGNORECASE,
)
# Upstream collapses whitespace with the `regex` package, whose \s differs from `re`'s
# (e.g. U+001C..U+001F are whitespace for `re` but not for `regex`), so use `regex` here too.
_SPACES_RE = regex.compile(r"\s+")


def _byte_table() -> list[tuple[int, str]]:
    """(byte, char) pairs in CLIP vocab order: printable latin-1 bytes keep their own code
    point; the other 68 bytes are moved to U+0100.. in increasing byte order. The *order*
    of this list fixes token ids 0..511 (so id 0 is "!", byte 0x21)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    kept = set(keep)
    moved = [b for b in range(256) if b not in kept]
    return [(b, chr(b)) for b in keep] + [(b, chr(256 + i)) for i, b in enumerate(moved)]


def default_bpe_path():
    """The merges file shipped in ``conceptseg/assets``."""
    return resources.files("conceptseg").joinpath("assets", "bpe_simple_vocab_16e6.txt.gz")


def clean_text(text: str) -> str:
    """SAM 3's "lower" cleaning: fix mojibake, unescape HTML (twice), normalise spaces, lower."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _SPACES_RE.sub(" ", text).strip().lower()


class ClipTokenizer:
    """Tokenize prompts into ``(N, context_length)`` int64 tensors of CLIP ids.

    Rows are ``[49406, *bpe_ids, 49407, 0, 0, ...]``. The pad id 0 is also the real token
    "!" -- kept because the SAM 3 checkpoints were trained that way (the text encoder
    masks by position, not by id). Over-long rows are cut to ``context_length`` with 49407
    forced into the last slot.
    """

    def __init__(self, bpe_path: str | PathLike | None = None, context_length: int = 32,
                 cache_size: int = 1 << 16):
        self.context_length = context_length
        src = default_bpe_path() if bpe_path is None else bpe_path
        with (src.open("rb") if hasattr(src, "joinpath") else open(src, "rb")) as fh:
            lines = gzip.decompress(fh.read()).decode("utf-8").split("\n")
        # line 0 is a header ('"bpe_simple_vocab_16e6.txt#version: 0.2'), then one merge per line
        merges = [tuple(line.split()) for line in lines[1:1 + NUM_MERGES]]
        assert len(merges) == NUM_MERGES and all(len(m) == 2 for m in merges), "bad BPE file"

        table = _byte_table()
        self.byte_to_char = dict(table)
        self.char_to_byte = {c: b for b, c in table}
        symbols = [c for _, c in table]
        vocab = symbols + [c + "</w>" for c in symbols] + ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.decoder = vocab
        assert len(vocab) == 49408 and self.encoder[EOT] == EOT_ID
        self.ranks = {m: r for r, m in enumerate(merges)}
        self.vocab_size = len(vocab)
        self.sot_token_id, self.eot_token_id = SOT_ID, EOT_ID
        # Per-instance LRU cache (a decorator on the method would pin `self` globally).
        self._bpe_cached = lru_cache(maxsize=cache_size)(self._bpe)

    def _bpe(self, word: str) -> tuple[str, ...]:
        """Merge the symbols of one byte-mapped word, lowest rank first, until none applies."""
        if word in (SOT, EOT):  # special names pass through whole, without "</w>"
            return (word,)
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        ranks = self.ranks
        while len(parts) > 1:
            best, best_rank = None, None
            for pair in zip(parts, parts[1:]):
                r = ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = pair, r
            if best is None:
                break
            # merge every non-overlapping occurrence of the best pair, left to right
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == best[0] and parts[i + 1] == best[1]:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return tuple(parts)

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` (cleaned first), without start/end tokens."""
        ids: list[int] = []
        for word in _WORD_RE.findall(clean_text(text)):
            mapped = "".join(self.byte_to_char[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self._bpe_cached(mapped))
        return ids

    def decode(self, ids) -> str:
        """Ids back to text; ``</w>`` becomes a space, invalid UTF-8 is replaced (as upstream)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        chars = "".join(self.decoder[int(i)] for i in ids)
        data = bytearray()
        for c in chars:
            # Special names are plain ASCII so they round-trip through the table too.
            data.append(self.char_to_byte[c])
        return data.decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> torch.LongTensor:
        """Tokenize one prompt or a list into a zero-padded ``(N, context_length)`` LongTensor."""
        if isinstance(texts, str):
            texts = [texts]
        n_ctx = context_length or self.context_length
        out = torch.zeros(len(texts), n_ctx, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [SOT_ID, *self.encode(text), EOT_ID]
            if len(ids) > n_ctx:
                ids = ids[:n_ctx]
                ids[-1] = EOT_ID
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out
