"""Tests for the CLIP BPE tokenizer (conceptseg.text.tokenizer)."""

import gzip
import json
from pathlib import Path

import pytest
import torch

from conceptseg.text.tokenizer import EOT_ID, NUM_MERGES, SOT_ID, ClipTokenizer, clean_text, default_bpe_path

REF_DIR = Path(__file__).resolve().parents[2] / "shared/reference/official_small"

PHRASES = [
    "red car",
    "A Person Riding a Bicycle",
    "  lots   of\t\textra \n spaces  ",
    "dog's toy, cat's bowl; they're here & we'll go",
    "hello!!! ... ?? (parentheses) [brackets] {braces}",
    "2 apples, 13 oranges and 1024 grapes",
    "price: $4.99 / 50% off #deal @store",
    "café naïve résumé jalapeño",
    "東京タワー and 北京",
    "Привет мир",
    "emoji 🐶🐱 party 🎉",
    "tom &amp; jerry &lt;3",
    "double &amp;amp; escaped",
    "MiXeD CaSe WoRdS",
    "e-mail re-use well-known",
    "under_score snake_case_name",
    "x",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "the quick brown fox jumps over the lazy dog",
    "c++ c# f(x)=y^2",
    "straße ǅ ﬁle",
]


@pytest.fixture(scope="module")
def tok():
    return ClipTokenizer()


def test_official_fixture(tok):
    path = REF_DIR / "image_case.pt"
    if not path.exists():
        pytest.skip(f"official reference fixture not found at {path}")
    case = torch.load(path, weights_only=True)
    ours = tok(case["prompt"])
    assert ours.dtype == torch.long
    assert torch.equal(ours, case["tokens"])


@pytest.fixture(scope="module")
def hf_tok(tmp_path_factory):
    """transformers' CLIPTokenizer built offline from our merges file."""
    transformers = pytest.importorskip("transformers")
    with default_bpe_path().open("rb") as fh:
        lines = gzip.decompress(fh.read()).decode("utf-8").split("\n")
    merges = lines[1 : 1 + NUM_MERGES]
    ours = ClipTokenizer()
    vocab = dict(ours.encoder)
    # transformers uses OpenAI's special-token names; same ids.
    del vocab["<start_of_text>"], vocab["<end_of_text>"]
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = SOT_ID, EOT_ID
    d = tmp_path_factory.mktemp("hf_clip")
    (d / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (d / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return transformers.CLIPTokenizer(vocab=str(d / "vocab.json"), merges=str(d / "merges.txt"))


@pytest.mark.parametrize("phrase", PHRASES)
def test_matches_transformers(tok, hf_tok, phrase):
    # transformers does no ftfy / HTML unescaping, so feed it the cleaned text; the
    # cleaning itself is checked by hand in test_clean_text.
    hf_ids = hf_tok(clean_text(phrase))["input_ids"]
    assert hf_ids[0] == SOT_ID and hf_ids[-1] == EOT_ID
    ours = tok.encode(phrase)
    assert ours == hf_ids[1:-1]
    row = tok(phrase)[0].tolist()
    n = min(len(ours), 30)
    assert row[: n + 2] == [SOT_ID, *ours[:n], EOT_ID]


def test_clean_text():
    assert clean_text("  Tom &amp;amp; JERRY\t\n &lt;3  ") == "tom & jerry <3"
    assert clean_text("cafÃ©") == "café"  # ftfy repairs mojibake
    assert clean_text("A\u00a0B\u3000C") == "a b c"  # unicode spaces collapse


def test_hand_verified(tok):
    assert tok.encode("red car") == [736, 1615]
    assert tok.encode("!") == [256]  # "!</w>"; bare "!" (id 0) never appears after BPE
    assert tok.decode([0]) == "!"
    assert tok.decode(tok.encode("A dog, 2 cats")) == "a dog , 2 cats "


def test_batch_and_shape(tok):
    out = tok(["red car", "a b c", ""])
    assert out.shape == (3, 32) and out.dtype == torch.long
    assert torch.equal(out[0], tok("red car")[0])
    assert tok("red car", context_length=77).shape == (1, 77)


def test_truncation(tok):
    out = tok(" ".join(["word"] * 200))
    assert out.shape == (1, 32)
    assert out[0, 0].item() == SOT_ID and out[0, -1].item() == EOT_ID
    assert (out[0, 1:-1] != 0).all()


def test_empty_string(tok):
    for text in ["", "   ", "\n\t"]:
        expected = [SOT_ID, EOT_ID] + [0] * 30
        assert tok(text)[0].tolist() == expected


def test_deterministic_and_cached(tok):
    a = tok(PHRASES)
    b = ClipTokenizer()(PHRASES)
    assert torch.equal(a, b) and torch.equal(a, tok(PHRASES))
    assert tok._bpe_cached.cache_info().hits > 0
