"""Glossary links for pages: one helper so every page links a term the same way (source: uegr.glossary)."""

from __future__ import annotations

import streamlit as st

from uegr.glossary import anchor, lookup

PAGE = "glossary"  # url_path of pages/glossary.py in app/streamlit_app.py


def link(term: str, label: str | None = None) -> str:
    """Markdown link to the term's entry on the Glossary page, e.g. '[Keep ratio](glossary#keep-ratio)'."""
    e = lookup(term)
    return f"[{label or e['title']}]({PAGE}#{anchor(term)})"


def tip(term: str) -> str:
    """A widget's help text: the term's one-line summary and where to read more."""
    return f"{lookup(term)['short']} More on the Glossary page."


def line(*terms: str) -> None:
    """One caption with links to the given terms (a page's one-line 'Terms used here')."""
    st.caption("Terms used here: " + " · ".join(link(t) for t in terms))
