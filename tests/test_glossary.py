"""The glossary: one source (uegr.glossary), the Glossary page, and the links pages make to it."""

from __future__ import annotations

import pytest
from pagetools import open_page

from uegr.glossary import TERMS, anchor, lookup
from uegr.models import build_tiny_bert, matrix_kind


def test_every_layer_part_name_has_an_entry():
    model = build_tiny_bert(2)
    kinds = {matrix_kind(n) for n, _ in model.named_parameters() if ".layer." in n}
    assert {"query", "key", "value", "attn_out", "ffn_in", "ffn_out", "attn_ln", "ffn_ln", "ffn_in_bias"} <= kinds
    for k in kinds:
        assert lookup(k)["short"], k
    for alias in ("fisher", "linf_token", "keep_ratio", "IoU", "ε-sharpness", "filter normalization"):
        assert lookup(alias)["key"] in TERMS
    with pytest.raises(KeyError, match="no glossary entry"):
        lookup("flux capacitor")


def test_glossary_page_and_links():
    at = open_page("../pages/glossary.py")
    assert [h.value for h in at.subheader] == [t["title"] for t in TERMS.values()]
    assert {h.proto.anchor for h in at.subheader} == {anchor(k) for k in TERMS}
    at.text_input(key="glossary_filter").input("sharpness").run()
    assert [h.value for h in at.subheader] == ["ε-sharpness"]
    at.text_input(key="glossary_filter").input("zzz").run()
    assert not at.subheader and "No term matches" in at.info[0].value
    # a page links terms to the Glossary page's anchors
    at = open_page("../pages/landscape.py")
    line = next(c.value for c in at.caption if c.value.startswith("Terms used here"))
    assert "(glossary#filter-normalisation)" in line and "(glossary#eps-sharpness)" in line
