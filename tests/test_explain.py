"""Integrated-gradients attributions on the embedding layer (tiny real BERT, MiniLM tokenizer)."""

from __future__ import annotations

import pytest

from uegr.explain import attribute


@pytest.fixture(scope="module")
def victim():
    from uegr.models import build_tiny_bert, load_tokenizer

    return build_tiny_bert(2, hidden=32, layers=2, seed=0), load_tokenizer("minilm")


def test_one_score_per_token_and_normalised(victim):
    model, tok = victim
    text = "an unbelievably gorgeous , witty movie ."
    r = attribute(model, tok, text, steps=20)
    ids = tok(text)["input_ids"]
    assert r["tokens"] == tok.convert_ids_to_tokens(ids)
    assert len(r["scores"]) == len(r["raw_scores"]) == len(ids)
    assert max(abs(s) for s in r["scores"]) == pytest.approx(1.0)
    assert r["scores"][0] == 0.0 and r["scores"][-1] == 0.0  # [CLS]/[SEP] are kept in the baseline
    assert r["target"] in (0, 1) and 0 <= r["probability"] <= 1 and r["steps"] == 20 and r["seconds"] > 0


def test_completeness_and_small_delta(victim):
    model, tok = victim
    model.train()
    r = attribute(model, tok, "the film is strictly routine and boring", target=1, steps=50)
    assert model.training  # mode restored
    assert r["target"] == 1
    assert abs(r["delta"]) < 1e-4
    gap = r["probability"] - r["baseline_probability"]
    assert sum(r["raw_scores"]) == pytest.approx(gap, abs=1e-4 + abs(r["delta"]))


def test_word_merge(victim):
    model, tok = victim
    text = "an unbelievably gorgeous movie"
    r_tok = attribute(model, tok, text, steps=10)
    r = attribute(model, tok, text, steps=10, words=True)
    assert r["tokens"] == text.split() and len(r["scores"]) == 4
    assert sum(r["raw_scores"]) == pytest.approx(sum(r_tok["raw_scores"]), abs=1e-6)
    with pytest.raises(ValueError):
        attribute(model, tok, text, target=5, steps=5)
