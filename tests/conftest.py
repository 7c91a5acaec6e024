"""Shared fixtures: tiny real models, the shipped MiniLM tokenizer, real data from ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import uegr  # noqa: F401 - sets the offline environment

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    os.environ["UEGR_DATA_DIR"] = str(SHARED_DATA)
    return SHARED_DATA


@pytest.fixture(scope="session")
def tokenizer():
    from uegr.models import load_tokenizer

    return load_tokenizer("minilm")


@pytest.fixture
def tiny_model():
    from uegr.models import build_tiny_bert

    return build_tiny_bert(2, hidden=32, layers=2, seed=0)


@pytest.fixture(scope="session")
def sst2_sentences(data_dir):
    rows = (data_dir / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:17]
    texts = [r.split("\t")[0].strip() for r in rows]
    labels = [int(r.split("\t")[1]) for r in rows]
    return texts, labels


@pytest.fixture
def batch(tokenizer, sst2_sentences):
    texts, labels = sst2_sentences
    enc = tokenizer(texts[:8], padding=True, truncation=True, max_length=32, return_tensors="pt")
    out = dict(enc)
    out["labels"] = torch.tensor(labels[:8])
    return out


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    d = tmp_path / "runs"
    monkeypatch.setenv("UEGR_HOME", str(d))
    return d
