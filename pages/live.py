"""Live: charts of running (or finished) runs, refreshed every second from only the new metric lines."""

from __future__ import annotations

import time

import streamlit as st

from app import charts, common, terms
from uegr import jobs

st.title("Live")
terms.line("js-divergence", "sub-models", "keep-ratio")  # glossary links
common.show_flash()
store = common.store()
names = [r.name for r in store.list()]
if not names:
    st.info("No runs yet: start one on the Train page or with the quick demo on Home.")
    st.stop()

# Default selection: the run just started (session state), else ?run=, else the newest run.
if "live_select" not in st.session_state:
    wanted = st.session_state.get("live_runs") or st.query_params.get_all("run") or names[:1]
    st.session_state["live_select"] = [n for n in wanted if n in names] or names[:1]
elif st.session_state.get("live_runs") and st.session_state["live_runs"] != st.session_state.get("_live_runs_seen"):
    st.session_state["live_select"] = [n for n in st.session_state["live_runs"] if n in names]
st.session_state["_live_runs_seen"] = st.session_state.get("live_runs")
st.session_state["live_select"] = [n for n in st.session_state["live_select"] if n in names]

c1, c2, c3 = st.columns([4, 2, 2])
selected = c1.multiselect("Runs (several = overlay)", names, key="live_select")
method = c2.selectbox("Smoothing", charts.SMOOTHINGS, key="live_smoothing")
if method.startswith("EMA"):
    weight = c3.slider("EMA weight", 0.0, 0.99, 0.9, 0.01, key="live_weight")
    window = 20
elif method == "Moving average":
    window = c3.slider("Window (steps)", 2, 200, 20, key="live_window")
    weight = 0.9
else:
    weight, window = 0.9, 20
st.query_params["run"] = selected

if not selected:
    st.info("Choose one or more runs above.")
    st.stop()

# One incremental series (MetricsReader inside) per run, kept across reruns and ticks.
series_cache: dict = st.session_state.setdefault("live_series", {})
for gone in [n for n in series_cache if n not in names]:
    del series_cache[gone]


def series_for(name: str) -> charts.RunSeries:
    s = series_cache.get(name)
    if s is None:
        s = series_cache[name] = charts.RunSeries(store.get(name))
    return s


def _method_note(shown: list) -> None:
    """Which curves are the paper's ingredients and which are this project's choices (UEGR runs only)."""
    if not any("js" in m for s in shown for _, m in s.cols):
        return
    common.provenance_row([
        ("paper", "adversarial loss, divergence between sub-models, selective update (kept fraction)",
         "Adversarial samples, adaptive-dropout sub-models and a selective update."),
        ("project", "JS as the divergence, loss weights, K and rate range, mask rule and refresh",
         "The JS form, the weights, K, the dropout-rate range, the l_inf adversary and the Fisher top-k mask: "
         "see docs/method.md.")])


@st.fragment(run_every=1)
def live_view() -> None:
    t0 = time.perf_counter()
    shown = [series_for(n) for n in selected]
    for s in shown:
        s.update()  # reads only bytes appended since the last tick
    for s in shown:
        stt = jobs.run_state(s.run)
        state = stt.get("state")
        with st.container(border=True):
            a, b, c = st.columns([2, 4, 4])
            with a:
                st.markdown(f"**{s.run.name}**")
                common.badge(state)
            with b:
                step, total = stt.get("step") or 0, stt.get("total_steps") or 0
                frac = min(1.0, step / total) if total else 0.0
                eta = stt.get("eta_s") if state == "running" else None
                eps = stt.get("examples_per_s")
                text = f"step {step}/{total or '?'}"
                if eta is not None:
                    text += f" · ETA {common.fmt_duration(eta)}"
                if eps:
                    text += f" · {eps:.1f} examples/s"
                if stt.get("best_score") is not None:
                    text += f" · best {stt.get('best_metric', 'score')} {stt['best_score']:.4f}"
                st.progress(frac, text=text)
            with c:
                common.run_controls(s.run, "live", state)
            if state in ("failed", "interrupted"):
                st.error(stt.get("error") or "the run failed", icon=":material/error:")
                tail = s.run.log_tail(30)
                if tail:
                    st.code(tail, language="text")
    figs = charts.live_figures(shown, method, weight, window)
    st.caption(charts.smoothing_caption(method, weight, window) + " Only the loss, divergence and gradient norm are "
               "smoothed; accuracy, learning rate, dropout rates and kept fractions are drawn as recorded (steps "
               "jump at each mask refresh). One colour per run, on every page; dashes tell a run's parts apart.")
    if not figs:
        st.info("No metrics logged yet: the first step appears here within a second of being written.")
    if figs:
        _method_note(shown)
    cols = st.columns(2)
    for i, (title, fig) in enumerate(figs):
        with cols[i % 2]:
            st.plotly_chart(fig, key="live_chart_" + title.split(":")[0].replace(" ", "_"), config={"displaylogo": False})
    st.caption(f"Refreshed {time.strftime('%H:%M:%S')} · tick {1000 * (time.perf_counter() - t0):.0f} ms")


live_view()
