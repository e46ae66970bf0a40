"""The engines' vocabulary, the out-of-vocabulary word list and --oov-negatives."""

from __future__ import annotations

import numpy as np
import pytest

from conceptseg.cli.train import add_arguments, config_from_args
from conceptseg.data.vocabulary import (ENGINE_WORDS, EXCLUDED, is_in_vocabulary, measure_nouns,
                                        out_of_vocabulary_words, replace_negatives)
from conceptseg.errors import InputError
from conceptseg.train.data import SyntheticStream


def test_oov_list_excludes_the_vocabulary():
    words = out_of_vocabulary_words()
    assert len(words) == len(set(words)) == 4000
    assert words == out_of_vocabulary_words.__wrapped__()  # deterministic
    assert not set(words) & (ENGINE_WORDS | EXCLUDED)
    assert all(w.isalpha() and w.isascii() and len(w) >= 3 for w in words)
    nouns = measure_nouns()
    assert len(nouns) == 200 and nouns[0] == "board"
    assert not set(nouns) & set(words), "the measured nouns are held out of training"
    assert not set(nouns) & (ENGINE_WORDS | EXCLUDED)


def test_is_in_vocabulary():
    assert is_in_vocabulary("small striped red star") == (True, [])
    assert is_in_vocabulary("Red Object") == (True, [])
    assert is_in_vocabulary("red board") == (False, ["board"])
    assert is_in_vocabulary("stars") == (False, ["stars"])
    assert is_in_vocabulary("") == (False, [])


def test_replace_negatives_touches_only_negatives():
    qs = [{"text": "red star", "presence": 1.0}, {"text": "blue star", "presence": 0.0}]
    replace_negatives(qs, np.random.default_rng(0), 1.0)
    assert qs[0]["text"] == "red star"
    assert not is_in_vocabulary(qs[1]["text"])[0]


def _args(*extra):
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["--out", "x", *extra])


def test_train_options_oov_and_randomize():
    cfg = config_from_args(_args("--oov-negatives", "0.3", "--randomize"))
    assert cfg.to_dict()["oov_negatives"] == 0.3 and cfg.to_dict()["randomize"] is True
    plain = config_from_args(_args())
    assert plain.oov_negatives == 0.0 and plain.randomize is False
    with pytest.raises(InputError):
        config_from_args(_args("--oov-negatives", "1.5"))
    with pytest.raises(InputError):
        config_from_args(_args("--randomize", "--data", "a.json"))


def test_stream_oov_negatives():
    plain = SyntheticStream(64, 2, 4).batch(0)
    oov = SyntheticStream(64, 2, 4, oov_negatives=1.0).batch(0)
    for a, b in zip(plain, oov):
        for qa, qb in zip(a["queries"], b["queries"]):
            if float(qa["presence"]):
                assert qa["text"] == qb["text"]
            else:
                assert not is_in_vocabulary(qb["text"])[0] and qb["boxes"].shape[0] == 0
