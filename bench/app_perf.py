"""Dashboard performance: page first-render time, Live refresh cost on a 10,000-step run, server memory.

    .venv/bin/python bench/app_perf.py                 # renders + tick, plus 1 minute of memory sampling
    .venv/bin/python bench/app_perf.py --minutes 5     # longer memory sampling
    .venv/bin/python bench/app_perf.py --minutes 0     # skip the browser/memory part

Targets: each page renders in < 2 s after warm-up (AppTest); one Live tick (poll new bytes + build
every chart + serialise them as st.plotly_chart would) < 100 ms at 10,000 logged steps; the RSS of a
`streamlit run` server with a browser on Live stays flat while the run keeps logging.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import plotly.io

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app import charts, serve  # noqa: E402
from uegr.config import build_config  # noqa: E402
from uegr.runs import RunStore  # noqa: E402

PAGES = ["home", "train", "live", "runs"]
LAYERS, K = 6, 3


def record(step: int, total: int) -> dict:
    t = step / total
    clean = 0.69 * math.exp(-3 * t) + 0.2 + random.gauss(0, 0.03)
    adv = clean * 1.15 + random.gauss(0, 0.03)
    js = 0.02 * math.exp(-2 * t) + abs(random.gauss(0, 0.003))
    r = {"kind": "train", "step": step, "epoch": 3 * t, "loss": clean + adv + js, "clean": clean, "adv": adv,
         "js": js, "lr": 2e-5 * min(1.0, step / (0.06 * total)) * (1 - t), "grad_norm": abs(random.gauss(1.5, 0.5)),
         "step_time": 0.4, "examples_per_s": 80 + random.gauss(0, 3), "eta_s": (total - step) * 0.4,
         "time": time.time(), "kept_fraction": 0.3}
    r.update({f"rate_{k}": random.uniform(0.05, 0.3) for k in range(K)})
    r.update({f"kept_l{i}": min(1.0, max(0.0, 0.3 + random.gauss(0, 0.05))) for i in range(LAYERS)})
    return r


def make_run(store: RunStore, name: str, steps: int) -> object:
    run = store.create(build_config("quick-demo"), name)
    lines = []
    for s in range(1, steps + 1):
        lines.append(json.dumps(record(s, steps)))
        if s % 100 == 0:
            lines.append(json.dumps({"kind": "eval", "split": "validation", "step": s, "accuracy": 0.7 + 0.2 * s / steps,
                                     "macro_f1": 0.7, "loss": 0.5, "n": 400}))
    run.metrics_path.write_text("\n".join(lines) + "\n")
    run.set_status(state="completed", started=time.time() - 4000, ended=time.time(), step=steps, total_steps=steps,
                   best_score=0.9, best_metric="accuracy")
    return run


def bench_pages(home: Path, repeats: int = 3) -> dict[str, float]:
    from streamlit.testing.v1 import AppTest

    os.environ["UEGR_HOME"] = str(home)
    out = {}
    at = AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=120)
    at.run()  # warm-up: imports (torch on Home), caches
    for p in PAGES:
        at.switch_page(f"../pages/{p}.py").run()  # warm-up of this page
        times = []
        for _ in range(repeats):
            fresh = AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=120)
            t0 = time.perf_counter()
            fresh.run()  # the default page (Home) in a new session
            if p != "home":
                t0 = time.perf_counter()
                fresh.switch_page(f"../pages/{p}.py").run()
            times.append(time.perf_counter() - t0)
            assert not fresh.exception, [e.value for e in fresh.exception]
        out[p] = statistics.median(times)
    return out


def bench_tick(run, ticks: int = 30) -> dict[str, float]:
    s = charts.RunSeries(run)
    t0 = time.perf_counter()
    s.update()
    first = time.perf_counter() - t0
    polls, builds = [], []
    n = s.n_points()
    for i in range(ticks):
        run.append_metrics([record(n + i + 1, n + ticks)])
        t0 = time.perf_counter()
        s.update()
        t1 = time.perf_counter()
        figs = charts.live_figures([s], "EMA (bias-corrected)", 0.9, 20)
        for _, f in figs:
            plotly.io.to_json(f.to_dict(), validate=False)  # what st.plotly_chart does with a Figure
        t2 = time.perf_counter()
        polls.append(t1 - t0)
        builds.append(t2 - t1)
    return {"first_read_s": first, "poll_ms": 1000 * statistics.median(polls),
            "charts_ms": 1000 * statistics.median(builds),
            "tick_ms": 1000 * statistics.median([a + b for a, b in zip(polls, builds)]), "points": s.n_points()}


def bench_memory(home: Path, run, minutes: float, every: float = 5.0) -> list[tuple[float, float]]:
    from playwright.sync_api import sync_playwright

    stop = threading.Event()
    run.set_status(state="running", pid=os.getpid(), host=socket.gethostname(), ended=None)

    def writer():  # the run keeps logging 2 steps/s while we watch
        n = run.summary()["step"]
        while not stop.is_set():
            n += 1
            run.append_metrics([record(n, n + 1000)])
            run.set_status(step=n, total_steps=n + 1000, heartbeat=time.time())
            stop.wait(0.5)

    proc, url = serve.start(home, log=home / "streamlit.log")
    th = threading.Thread(target=writer, daemon=True)
    samples = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=serve.CHROMIUM, args=serve.CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/live?run={run.name}")
            page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
            th.start()
            t_end = time.time() + 60 * minutes
            t0 = time.time()
            while time.time() < t_end:
                samples.append((time.time() - t0, serve.rss_mb(proc.pid)))
                time.sleep(every)
            browser.close()
    finally:
        stop.set()
        serve.stop(proc)
        run.set_status(state="completed", ended=time.time())
    return samples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=1.0, help="memory sampling time (0 = skip)")
    ap.add_argument("--steps", type=int, default=10_000)
    args = ap.parse_args()
    random.seed(0)
    home = Path(tempfile.mkdtemp(prefix="uegr_bench_"))
    store = RunStore(home)
    run = make_run(store, "synthetic-10k", args.steps)
    print(f"synthetic run: {run.metrics_path} ({run.metrics_path.stat().st_size / 2**20:.1f} MB, {args.steps} steps)")

    rows = []
    pages = bench_pages(home)
    for p, t in pages.items():
        rows.append((f"render {p} (AppTest, warm)", f"{t:.2f} s", "< 2 s", t < 2))
    tick = bench_tick(run)
    rows.append(("Live first read of 10k steps", f"{1000 * tick['first_read_s']:.0f} ms", "(once per session)", True))
    rows.append(("Live tick: poll new lines", f"{tick['poll_ms']:.2f} ms", "", True))
    rows.append(("Live tick: build + serialise charts", f"{tick['charts_ms']:.1f} ms", "", True))
    rows.append((f"Live tick total ({tick['points']} points)", f"{tick['tick_ms']:.1f} ms", "< 100 ms",
                 tick["tick_ms"] < 100))
    if args.minutes > 0:
        if not Path(serve.CHROMIUM).exists():
            rows.append(("server RSS", "skipped", "needs /usr/bin/chromium", True))
        else:
            samples = bench_memory(home, run, args.minutes)
            warm = [m for t, m in samples if t >= min(30, 60 * args.minutes / 3)] or [m for _, m in samples]
            q = max(1, len(warm) // 4)
            first, last = statistics.mean(warm[:q]), statistics.mean(warm[-q:])
            growth = last - first
            flat = growth < max(15.0, 0.05 * first)
            rows.append((f"server RSS over {args.minutes:g} min (browser on Live)",
                         f"{first:.0f} -> {last:.0f} MB (max {max(m for _, m in samples):.0f})",
                         "flat: growth < max(15 MB, 5%)", flat))
            print("RSS samples (s, MB):", " ".join(f"{t:.0f}:{m:.0f}" for t, m in samples))
    w = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{w}}  {'result':<30} {'target':<32} ok")
    for name, res, target, ok in rows:
        print(f"{name:<{w}}  {res:<30} {target:<32} {'yes' if ok else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
