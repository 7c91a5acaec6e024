"""Home: what UEGR Studio does, the two stages, detected devices, and a one-click quick demo."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import common, jobs, terms
from uegr.config import build_config
from uegr.runs import RunError

ASSETS = Path(__file__).resolve().parents[1] / "assets"

st.title("UEGR Studio")
common.show_flash()
st.markdown(
    "Fine-tune a text classifier to be **accurate and robust** with UEGR, a bi-stage method "
    "(Sun et al., 2025), and compare it with vanilla fine-tuning, R-Drop, FreeLB, CHILD-TUNING and RoAST "
    "under the same budget. Train here, watch the losses live, then inspect saliency masks, loss "
    "landscapes and word-level attacks.\n\n"
    "- **Stage 1 (forward):** an adversarial perturbation of the embeddings is fed through K sub-models "
    "with different dropout rates; their predictions are pulled together (Jensen-Shannon).\n"
    "- **Stage 2 (backward):** only the most salient parameters (Fisher information) are updated.\n\n"
    "Only the paper's abstract is public: the details are this project's reconstruction, and each "
    "knob's tooltip on the Train page says which is which.")
st.image(str(ASSETS / "uegr_stages.svg"), caption="One UEGR training step", width="stretch")
terms.line("adversarial-perturbation", "sub-models", "js-divergence", "fisher-saliency", "selective-update")

left, right = st.columns(2)
with left:
    st.subheader("Devices")
    dev = common.devices()
    st.markdown(f"- CPU: **{dev['cpu_count']}** threads"
                + (f" (torch uses {dev['torch_threads']})" if dev["torch_threads"] else ""))
    if dev["cuda"]:
        for g in dev["cuda"]:
            st.markdown(f"- CUDA {g['index']}: **{g['name']}**, {g['memory_gb']} GB")
    else:
        st.markdown("- CUDA: none")
    st.markdown(f"- Apple MPS: {'available' if dev['mps'] else 'none'}")
    st.caption(f"torch {dev['torch'] or 'not installed'} · runs folder `{common.runs_root()}`")
with right:
    st.subheader("Quick demo")
    st.markdown("UEGR on 1,600 Rotten Tomatoes snippets with MiniLM: about 2 minutes on 2 CPU cores, about 78 % validation accuracy.")
    if st.button("Start the quick demo", type="primary", icon=":material/rocket_launch:", key="quick_demo"):
        try:
            run = jobs.start_run(build_config("quick-demo"), common.store())
        except RunError as exc:
            st.error(str(exc))
        else:
            common.flash(f"Started the quick demo: {run.name}")
            common.open_in_live(run.name)
    st.page_link(common.TRAIN_PAGE, label="Or choose every setting on the Train page", icon=":material/tune:")
