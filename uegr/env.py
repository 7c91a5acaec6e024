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


def hardware() -> dict:
    """What a run trained on, for its status and model card: CPU model and cores, GPU, library versions."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    out = {"cpu": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
    if torch.cuda.is_available():
        out["gpu"] = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return out
