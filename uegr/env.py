"""Process environment for offline use: hub look-ups fail fast, NLTK/TextAttack data live in the
project's own cache folder (built by setup.sh)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """<repo>/.cache when running from a checkout, else ~/.cache/uegr; override with UEGR_CACHE."""
    if os.environ.get("UEGR_CACHE"):
        return Path(os.environ["UEGR_CACHE"]).expanduser()
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").is_file():
        return repo / ".cache"
    return Path.home() / ".cache" / "uegr"


def configure() -> None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("NLTK_DATA", str(cache_dir() / "nltk_data"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
