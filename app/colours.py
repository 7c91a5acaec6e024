"""One colour per run and per layer, one marker shape per method: the same on every page and in every session.
Colour always means the run (never the method), so no chart can contradict another.

A run's colour is a hash of its name into a fixed palette (not its position in a list), so it does not
change when other runs are added, deleted or deselected. No Streamlit import here.
"""

from __future__ import annotations

import hashlib
import re

# D3's category10 then darker category20b tones: every entry readable as a thin line or small text on white.
RUN_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
               "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#7b4173"]
# Layers: viridis in 6 wide steps (MiniLM has 6 layers: first dark, last light, neighbours far apart), then
# plasma for deeper models. Indexed by layer number, so Live and Saliency agree.
LAYER_PALETTE = ["#440154", "#3b528b", "#21918c", "#5ec962", "#b5de2b", "#fde725",
                 "#0d0887", "#7e03a8", "#cc4778", "#f89540", "#f0f921", "#9c179e"]
ALL_LAYERS = "#222222"  # the "all layers" line
METHOD_SYMBOLS = {"uegr": "circle", "vanilla": "square", "rdrop": "diamond", "freelb": "triangle-up",
                  "childtuning": "cross", "roast": "star"}
# Parts of one run's loss share the run's colour and differ by dash.
DASHES = ["solid", "dot", "dash", "longdash", "dashdot", "longdashdot"]


def run_colour(name: str) -> str:
    """Stable colour of a run: md5 of its name (Python's hash() is salted per process)."""
    h = int(hashlib.md5(str(name).encode("utf-8")).hexdigest()[:8], 16)
    return RUN_PALETTE[h % len(RUN_PALETTE)]


def layer_colour(layer: int | str) -> str:
    """Colour of encoder layer `layer` (an int, 'l3', 'layer 3', 'kept_l3'); 'all'/None -> ALL_LAYERS."""
    m = re.search(r"(\d+)", str(layer)) if layer is not None else None
    if not m:
        return ALL_LAYERS
    return LAYER_PALETTE[int(m.group(1)) % len(LAYER_PALETTE)]


def method_symbol(method: str | None) -> str:
    return METHOD_SYMBOLS.get(str(method), "circle-open")
