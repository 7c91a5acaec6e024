"""Home: what UEGR Studio does, the two stages, detected devices, and a one-click quick demo."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import common, terms
from uegr import jobs
from uegr.config import build_config
from uegr.runs import RunError

ASSETS = Path(__file__).resolve().parents[1] / "assets"

st.title("UEGR Studio")
common.show_flash()
st.markdown(
    "Fine-tune a text classifier to be **accurate and robust** with UEGR, a bi-stage method "
    "(Sun et al., 2025), and compare it with vanilla fine-tuning, R-Drop, FreeLB, CHILD-TUNING and RoAST "
    "under the same budget: train, watch the losses live, then inspect saliency masks, loss landscapes and "
    "word-level attacks.")

# The quick demo first: it is what a new user came for, and it must be visible without scrolling.
demo, devs = st.columns([3, 2])
with demo:
    with st.container(border=True):
        st.subheader("Quick demo", anchor=False)
        st.markdown("UEGR on 1,600 Rotten Tomatoes snippets with MiniLM: about 2 minutes on 2 CPU cores, about "
                    "78 % validation accuracy.")
        if st.button("Start the quick demo", type="primary", icon=":material/rocket_launch:", key="quick_demo"):
            try:
                run = jobs.start_run(build_config("quick-demo"), common.store())
            except RunError as exc:
                st.error(str(exc))
            else:
                common.flash(f"Started the quick demo: {run.name}")
                common.open_in_live(run.name)
        st.page_link(common.TRAIN_PAGE, label="Or choose every setting on the Train page", icon=":material/tune:")
        st.page_link(common.SWEEP_PAGE, label="Or tune them for clean + robust accuracy (Sweep page)",
                     icon=":material/travel_explore:")
with devs:
    st.subheader("Devices", anchor=False)
    dev = common.devices()
    lines = [f"- CPU: **{dev['cpu_count']}** threads"
             + (f" (torch uses {dev['torch_threads']})" if dev["torch_threads"] else "")]
    lines += [f"- CUDA {g['index']}: **{g['name']}**, {g['memory_gb']} GB" for g in dev["cuda"]] or ["- CUDA: none"]
    lines.append(f"- Apple MPS: {'available' if dev['mps'] else 'none'}")
    st.markdown("\n".join(lines))
    st.caption(f"torch {dev['torch'] or 'not installed'} · runs folder `{common.runs_root()}`")



@st.fragment(run_every=2.0 if jobs.active(common.store()) else None)
def _jobs() -> None:
    with st.expander("Background jobs (training, attacks, probes, sweeps)", expanded=False):
        common.jobs_panel(key="home_jobs")


_jobs()

st.subheader("How one UEGR step works", anchor=False)
st.markdown(
    "- **Stage 1 (forward):** an adversarial perturbation of the embeddings is fed through K sub-models "
    "with different dropout rates; their predictions are pulled together (Jensen-Shannon).\n"
    "- **Stage 2 (backward):** only the most salient parameters (Fisher information) are updated.")
common.provenance_row([
    ("paper", "the two stages: adversarial inputs + adaptive dropout, then saliency + selective update",
     "The two stages and their ingredients are the abstract's words."),
    ("project", "every number and rule in the diagram",
     "Only the abstract is public: the JS loss, K = 3, the rate range, the l_inf adversary, Fisher top-30 % and "
     "the refresh rule are this project's choices (docs/method.md)."),
    ("not reproduced", "the paper's claim of better robustness; a flatter landscape is not shown either",
     "docs/results.md: on SST-2 (3 seeds, 500 attacked sentences per run) UEGR was not distinguishable from "
     "vanilla under attack. A flatter loss landscape is the paper's hope, not a measured fact: probe it on the "
     "Landscape page."),
])
st.image(str(ASSETS / "uegr_stages.svg"), caption="One UEGR training step (this project's reconstruction)",
         width="stretch")
terms.line("adversarial-perturbation", "sub-models", "js-divergence", "fisher-saliency", "selective-update")
