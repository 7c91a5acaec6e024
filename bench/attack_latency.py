"""Latency of the Attack lab's single-sentence path, once warm (model loaded, textattack imported, attack built).

    python bench/attack_latency.py             # 5 sentences, DeepWordBug + IG (50 steps)
    python bench/attack_latency.py --quick     # 2 sentences

Model: the default all-MiniLM-L6-v2 with a fresh 2-label head (load_model(ModelConfig(name='minilm'), 2)),
as the Attack lab would hold it in st.cache_resource. Sentences: SST-2 dev (../shared/data) if present,
else built-in examples. Reported: the cold first call (textattack import + attack build), then the median
over the sentences of a warm DeepWordBug attack (query budget 2000, <= 30 % words) and of one Integrated
Gradients attribution at 50 steps. Targets: attack <= 3 s, attribution <= 1 s. Timings vary with other
load on the machine (2 shared cores here): the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FALLBACK = [
    "it 's a charming and often affecting journey .",
    "unflinchingly bleak and desperate",
    "allows us to hope that nolan is poised to embark a major career as a commercial yet inventive filmmaker .",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's "
    "austere locales .",
    "it 's slow -- very , very slow .",
]


def sentences(n: int) -> list[str]:
    dev = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"
    if dev.is_file():
        rows = dev.read_text(encoding="utf-8").splitlines()[1:]
        texts = [r.split("\t")[0].strip() for r in rows if r.strip()]
        texts = [t for t in texts if 6 <= len(t.split()) <= 20]
        return texts[:n]
    return FALLBACK[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--recipe", default="deepwordbug")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n = 2 if args.quick else args.n

    import torch

    from uegr.attacks import attack_sentence
    from uegr.config import ModelConfig
    from uegr.explain import attribute
    from uegr.models import load_model

    t0 = time.perf_counter()
    model, tok = load_model(ModelConfig(name="minilm"), 2, label_names=["negative", "positive"])
    model.eval()
    load_s = time.perf_counter() - t0
    texts = sentences(n + 1)
    t0 = time.perf_counter()
    attack_sentence(model, tok, texts[0], recipe=args.recipe)  # imports textattack, builds + caches the attack
    cold_s = time.perf_counter() - t0
    attribute(model, tok, texts[0], steps=args.steps, words=True)  # warm captum

    attack_s, queries, ig_s, deltas = [], [], [], []
    for text in texts[1:n + 1]:
        rec = attack_sentence(model, tok, text, recipe=args.recipe)
        attack_s.append(rec["seconds"])
        queries.append(rec["num_queries"])
        t0 = time.perf_counter()
        a = attribute(model, tok, text, steps=args.steps, words=True)
        ig_s.append(time.perf_counter() - t0)
        deltas.append(a["delta"])
    out = {
        "model": "all-MiniLM-L6-v2 (2 labels)", "recipe": args.recipe, "sentences": len(attack_s),
        "torch_threads": torch.get_num_threads(), "loadavg_1m": round(os.getloadavg()[0], 2),
        "load_model_s": round(load_s, 2), "first_attack_cold_s": round(cold_s, 2),
        "attack_median_s": round(statistics.median(attack_s), 3), "attack_max_s": round(max(attack_s), 3),
        "attack_median_queries": statistics.median(queries),
        "ig_steps": args.steps, "ig_median_s": round(statistics.median(ig_s), 3), "ig_max_s": round(max(ig_s), 3),
        "ig_max_delta": max(deltas),
        "attack_target_met": statistics.median(attack_s) <= 3.0, "ig_target_met": statistics.median(ig_s) <= 1.0,
    }
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for k, v in out.items():
            print(f"{k:<22} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
