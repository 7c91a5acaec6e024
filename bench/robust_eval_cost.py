"""Cost of live robust evaluation: training wall time with and without it, measured in one run.

    python bench/robust_eval_cost.py [--preset quick-demo] [--repeats 2] [--set runtime.threads=1 ...]

Trains the preset with its robust-evaluation settings ("on") and with runtime.robust_eval_every=0 ("off"),
alternating off/on `--repeats` times, each in a fresh `uegr train` process. Training wall time = the run's
ended - started (model and data loading excluded; the wait for the last robust result at the end included).
Prints JSON with each time, the medians and the overhead ratio (on / off - 1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def train(home: str, name: str, preset: str, sets: list[str]) -> dict:
    cmd = [sys.executable, "-m", "uegr.cli", "train", "--preset", preset, "--name", name, "--quiet", "--json"]
    for s in sets:
        cmd += ["--set", s]
    env = dict(os.environ, UEGR_HOME=home, PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    process = time.perf_counter() - t0
    st = json.loads((Path(home) / name / "status.json").read_text())
    robust = [json.loads(line) for line in (Path(home) / name / "metrics.jsonl").read_text().splitlines()
              if '"robust"' in line]
    res = json.loads(out.stdout)
    return {"seconds": st["ended"] - st["started"], "process_seconds": round(process, 2), "accuracy": res.get("accuracy"),
            "robust": [{k: r[k] for k in ("step", "robust_acc", "robust_eval_seconds")} for r in robust]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="quick-demo")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="uegr-robust-bench-")
    off, on = [], []
    for i in range(args.repeats):
        off.append(train(home, f"off-{i}", args.preset, args.set + ["runtime.robust_eval_every=0"]))
        on.append(train(home, f"on-{i}", args.preset, args.set))
        print(json.dumps({"repeat": i, "off": off[-1], "on": on[-1]}), flush=True)
    m_off = statistics.median(r["seconds"] for r in off)
    m_on = statistics.median(r["seconds"] for r in on)
    print(json.dumps({"preset": args.preset, "set": args.set, "repeats": args.repeats,
                      "off_seconds": [round(r["seconds"], 1) for r in off],
                      "on_seconds": [round(r["seconds"], 1) for r in on],
                      "median_off": round(m_off, 1), "median_on": round(m_on, 1),
                      "overhead": round(m_on / m_off - 1, 4),
                      "process_overhead": round(statistics.median(r["process_seconds"] for r in on)
                                                / statistics.median(r["process_seconds"] for r in off) - 1, 4),
                      "load_avg": os.getloadavg(),
                      "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=1))


if __name__ == "__main__":
    main()
