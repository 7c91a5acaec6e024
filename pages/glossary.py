"""Glossary: every term the studio uses, from the one source in uegr/glossary.py."""

from __future__ import annotations

import streamlit as st

from uegr.glossary import TERMS

st.title("Glossary")
st.markdown("The words the pages, the CLI and the reports use. Pages link here where a term appears; the "
            "layer-part names (query, ffn_in, ...) are the labels the saliency and update heatmaps give weight "
            "matrices.")
query = st.text_input("Filter", key="glossary_filter", placeholder="e.g. sharpness, ffn").strip().lower()
shown = 0
for key, e in TERMS.items():
    if query and query not in (e["title"] + " " + e["short"] + " " + e["body"]).lower():
        continue
    shown += 1
    st.subheader(e["title"], anchor=key, divider="gray")
    st.markdown(f"**{e['short']}**\n\n{e['body']}")
if not shown:
    st.info(f"No term matches '{query}'.")
