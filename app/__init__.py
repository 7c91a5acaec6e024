"""UEGR Studio app helpers (Streamlit-side). The library in `uegr/` never imports Streamlit."""
