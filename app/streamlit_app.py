"""UEGR Studio entry point: `streamlit run app`. Navigation over the thin pages in ../pages/."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the library and app helpers import from the checkout
    sys.path.insert(0, str(ROOT))

# (file, title, icon, url path). A page appears only when its file exists, so unfinished work never
# shows up as a broken entry.
PAGES = [
    ("home.py", "Home", ":material/home:", "home"),
    ("train.py", "Train", ":material/model_training:", "train"),
    ("live.py", "Live", ":material/monitoring:", "live"),
    ("runs.py", "Runs", ":material/folder_open:", "runs"),
    ("saliency.py", "Saliency", ":material/grid_on:", "saliency"),
    ("landscape.py", "Landscape", ":material/landscape:", "landscape"),
    ("attack.py", "Attack lab", ":material/bolt:", "attack"),
    ("compare.py", "Compare", ":material/compare_arrows:", "compare"),
    ("sweep.py", "Sweep", ":material/travel_explore:", "sweep"),
    ("learn.py", "Learn", ":material/school:", "learn"),
    ("glossary.py", "Glossary", ":material/menu_book:", "glossary"),
]

st.set_page_config(page_title="UEGR Studio", page_icon=":material/shield:", layout="wide")
pages = [st.Page(f"../pages/{f}", title=t, icon=i, url_path=u, default=(u == "home"))
         for f, t, i, u in PAGES if (ROOT / "pages" / f).is_file()]
st.navigation(pages).run()
