"""Seconds for one Learn-page UEGR step (`uegr.teach.walk_step`) on CPU, MiniLM, 8 built-in sentences.

    .venv/bin/python bench/learn_step.py [--model minilm|tiny-bert] [--threads N] [--repeats 3]

Prints the load time, then per repeat the step time (UEGR.step + SelectiveUpdater + optimizer) and the
whole walk_step time (deep copy + probes + reports). Target: <= 5 s per step on CPU. Timings on a shared
machine vary a lot: compare against the plain-step baseline printed in the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def plain_step(model, tokenizer, texts, labels) -> float:
    """Baseline: one vanilla fine-tuning step (fwd + bwd + AdamW) on the same batch and a copy of the model."""
    import copy

    work = copy.deepcopy(model).train()
    enc = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    opt = torch.optim.AdamW(work.parameters(), lr=2e-5)
    t = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(work(**enc).logits, torch.tensor(labels))
    loss.backward()
    opt.step()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from uegr.config import MethodConfig
    from uegr.teach import load_learn_model, sample_batch, walk_step

    t = time.perf_counter()
    model, tokenizer = load_learn_model(args.model)
    texts, labels, _ = sample_batch(8)
    print(f"model={args.model} threads={torch.get_num_threads()} cpus={os.cpu_count()} "
          f"load+data {time.perf_counter() - t:.2f} s")
    walk_step(model, tokenizer, texts, labels, MethodConfig(), 0)  # warm-up
    steps, totals, plains = [], [], []
    for i in range(args.repeats):
        plains.append(plain_step(model, tokenizer, texts, labels))
        r = walk_step(model, tokenizer, texts, labels, MethodConfig(), i)
        steps.append(r["step_seconds"])
        totals.append(r["total_seconds"])
        print(f"repeat {i}: plain step {plains[-1]:.2f} s | UEGR step {r['step_seconds']:.2f} s | "
              f"walk_step total {r['total_seconds']:.2f} s")
    print(f"median: plain {statistics.median(plains):.2f} s, UEGR step {statistics.median(steps):.2f} s "
          f"({statistics.median(steps) / statistics.median(plains):.1f}x), walk_step {statistics.median(totals):.2f} s")


if __name__ == "__main__":
    main()
