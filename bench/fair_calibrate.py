"""Sizing for bench/fair_protocol.py: seconds per training step per method and seconds per attacked
sentence per recipe on THIS machine, at one thread (so other engineers' load shows as a slowdown that is
measured and divided out, see --reference).

    UEGR_DATA_DIR=../shared/data nice -n 10 python bench/fair_calibrate.py --out runs/fair-calibration.json

A vanilla MiniLM is first trained --warm-steps steps on SST-2 (an untrained model is fooled at once, which
would make attacks look cheap); every method then runs --steps steps; every recipe attacks --sentences test
sentences of the warmed model with the protocol's budget (2000 queries, 30 % of words).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uegr.config import build_config  # noqa: E402
from uegr.data import load_dataset  # noqa: E402
from uegr.trainer import Trainer  # noqa: E402

METHODS = ("vanilla", "rdrop", "freelb", "childtuning", "roast", "uegr")
RECIPES = ("deepwordbug", "textfooler-lite", "pwws")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warm-steps", type=int, default=40)
    ap.add_argument("--sentences", type=int, default=16)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", default="runs/fair-calibration.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    base = ["data.source=sst2", "data.max_train_examples=5000", "data.max_eval_examples=0", "data.max_length=64",
            "model.name=minilm", "optim.lr=2e-4", "optim.batch_size=32", "runtime.eval_every=100000",
            "runtime.snapshot_saliency=false", "runtime.threads=1", "data.group_by_length=true"]
    dataset = load_dataset(build_config(None, None, base).data)
    out: dict = {"threads": 1, "steps": args.steps, "sentences": args.sentences, "step_seconds": {},
                 "attack_seconds_per_sentence": {}, "started": time.time()}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    # warm model (vanilla): its time per step is also vanilla's step cost
    cfg = build_config(None, None, base + ["method.name=vanilla", f"optim.max_steps={args.warm_steps}"])
    tr = Trainer(cfg, dataset=dataset)
    t0 = time.time()
    tr.fit()
    out["warm_seconds"] = time.time() - t0
    model, tok = tr.model, tr.tokenizer
    model.eval()
    from uegr.trainer import evaluate_model

    t0 = time.time()  # one dev evaluation (872 sentences), subtracted from the methods' fit times below
    evaluate_model(model, tok, dataset.splits["validation"], 64, 64, dataset.num_labels)
    out["dev_eval_seconds"] = eval_s = time.time() - t0
    from uegr.attacks.runner import attack_dataset

    test = dataset.splits["test"]
    for recipe in RECIPES:
        t0 = time.time()
        s = attack_dataset(model, tok, test.texts, test.labels, recipe=recipe, n=args.sentences, seed=0,
                           query_budget=2000, max_perturb_fraction=0.3)
        out["attack_seconds_per_sentence"][recipe] = (time.time() - t0) / args.sentences
        out.setdefault("attack_accuracy_under_attack", {})[recipe] = s["accuracy_under_attack"]
        path.write_text(json.dumps(out, indent=1))
        print(recipe, out["attack_seconds_per_sentence"][recipe], flush=True)
    del tr
    for method in args.methods.split(","):
        cfg = build_config(None, None, base + [f"method.name={method}", f"optim.max_steps={args.steps}"])
        tr = Trainer(cfg, dataset=dataset)
        t0 = time.time()
        tr.fit()  # includes the one final evaluation on the 872 dev sentences: subtracted
        out["step_seconds"][method] = (time.time() - t0 - eval_s) / args.steps
        path.write_text(json.dumps(out, indent=1))
        print(method, out["step_seconds"][method], flush=True)
        del tr
    out["ended"] = time.time()
    path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
