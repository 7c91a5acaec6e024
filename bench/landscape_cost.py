"""Cost of the landscape probes (uegr.landscape) beside the packages people usually reach for.

    python bench/landscape_cost.py            # 41-point 1-D slice on 512 examples; top eigenvalue on 256
    python bench/landscape_cost.py --quick    # 5 points on 64 examples; eigenvalue on 16 (a smoke run)

Model: the default all-MiniLM-L6-v2 with a fresh 2-label head; data: the built-in validation split.
Baselines are the real packages, installed beside the project (not in requirements.txt):
`loss-landscapes` 3.0.6 (random_line with filter normalisation, a Metric looping over a DataLoader)
and `PyHessian` 0.1 (hessian(..., dataloader=...).eigenvalues: per batch forward, backward with
create_graph, then the Hessian-vector product). If they are not installed, the script says so and
skips those columns. Both sides run the same model in eval mode, float32, on the same examples, with
the attention kernels `probe_run` picks (fused sdpa for the slice, eager for double backprop); the
baselines get a plain DataLoader (dataset order, padded to each batch's longest row) as their users
would, uegr gets `fixed_batches` (sorted by length). Timings vary with other load on the machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from uegr import landscape as ls  # noqa: E402
from uegr.config import DataConfig, ModelConfig  # noqa: E402
from uegr.data import load_dataset, make_loader  # noqa: E402
from uegr.models import load_model  # noqa: E402


class _Inputs(dict):
    """A dict of model inputs with the .to()/.size() PyHessian calls on its `inputs`."""

    def to(self, device):
        return _Inputs({k: v.to(device) for k, v in self.items()})

    def size(self, dim: int = 0):
        return self["input_ids"].size(dim)


class _Logits(nn.Module):
    """model(inputs) -> logits tensor, the calling convention both packages assume."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs):
        return self.model(**inputs).logits.float()


def padding_share(batches) -> float:
    mask = [b["attention_mask"] for b in batches]
    return 1.0 - sum(float(m.sum()) for m in mask) / sum(m.numel() for m in mask)


def naive_batches(split, tokenizer, n, batch_size, max_length, seed):
    """What a user of the packages would pass: the same examples, dataset order, a plain DataLoader."""
    import random

    idx = sorted(random.Random(seed).sample(range(len(split)), n)) if n < len(split) else list(range(len(split)))
    return list(make_loader(split.take(idx), tokenizer, max_length, batch_size, shuffle=False))


def bench_slice(model, ours_b, naive_b, points, span, seed) -> dict:
    out: dict = {}
    t = time.perf_counter()
    d = ls.random_direction(model, seed)
    alphas = [-span + 2 * span * i / (points - 1) for i in range(points)]
    losses = ls.slice_1d(model, ours_b, d, alphas)
    out["uegr_s"] = time.perf_counter() - t
    out["uegr_loss_at_0"] = losses[points // 2]
    try:
        import loss_landscapes
        from loss_landscapes.metrics import Metric
        from loss_landscapes.model_interface.model_wrapper import GeneralModelWrapper
    except ImportError:
        out["baseline"] = "loss-landscapes not installed: pip install --no-deps loss-landscapes==3.0.6"
        return out

    class LoaderLoss(Metric):
        def __init__(self, batches):
            super().__init__()
            self.batches = batches

        def __call__(self, wrapper) -> float:
            total, count = 0.0, 0
            for b in self.batches:
                inputs = {k: v for k, v in b.items() if k != "labels"}
                logits = wrapper.forward(inputs)
                total += float(nn.functional.cross_entropy(logits, b["labels"], reduction="sum"))
                count += len(b["labels"])
            return total / count

    # loss-landscapes 3.0.6 divides by zero in filter_normalize_ when a 1-D parameter is all zeros (the
    # fresh classifier bias): hand it a copy with those nudged by 1e-8 (the cost is unchanged).
    start = copy.deepcopy(model)
    with torch.no_grad():
        for p in start.parameters():
            if p.dim() == 1 and not p.any():
                p.add_(1e-8)
    torch.manual_seed(seed)
    t = time.perf_counter()
    wrapper = GeneralModelWrapper(start, [start], lambda m, x: m(**x).logits.float())
    # deepcopy_model=True: the package's way to leave the caller's model untouched.
    loss_landscapes.random_line(wrapper, LoaderLoss(naive_b), distance=span, steps=points,
                                normalization="filter", deepcopy_model=True)
    out["loss_landscapes_s"] = time.perf_counter() - t
    del start, wrapper
    out["ratio"] = out["loss_landscapes_s"] / out["uegr_s"]
    return out


def bench_eigen(model, ours_b, naive_b, iters, seed) -> dict:
    out: dict = {}
    for cache in (False, True):
        t = time.perf_counter()
        r = ls.top_eigenvalues(model, ours_b, k=1, iters=iters, tol=1e-3, seed=seed, cache_graph=cache)
        key = "uegr_cached" if cache else "uegr"
        out[f"{key}_s"] = time.perf_counter() - t
        out[f"{key}_eigenvalue"] = r["eigenvalues"][0]
        out[f"{key}_iterations"] = r["iterations"][0]
    try:
        from pyhessian import hessian
    except ImportError:
        out["baseline"] = "PyHessian not installed: pip install --no-deps pyhessian==0.1"
        return out
    wrapped = _Logits(model).eval()
    loader = [(_Inputs({k: v for k, v in b.items() if k != "labels"}), b["labels"]) for b in naive_b]
    torch.manual_seed(seed)
    t = time.perf_counter()
    h = hessian(wrapped, nn.CrossEntropyLoss(), dataloader=loader, cuda=False)
    calls = {"n": 0}
    inner = h.dataloader_hv_product

    def counted(v):
        calls["n"] += 1
        return inner(v)

    h.dataloader_hv_product = counted
    vals, _ = h.eigenvalues(maxIter=iters, tol=1e-3, top_n=1)
    out["pyhessian_s"] = time.perf_counter() - t
    out["pyhessian_eigenvalue"] = float(vals[0])
    out["pyhessian_iterations"] = calls["n"]
    model.zero_grad(set_to_none=True)
    out["ratio"] = out["pyhessian_s"] / out["uegr_s"]
    out["ratio_cached"] = out["pyhessian_s"] / out["uegr_cached_s"]
    out["ratio_per_iteration"] = (out["pyhessian_s"] / calls["n"]) / (out["uegr_s"] / out["uegr_iterations"])
    return out


def forward_rate(model, batches, n_params: int) -> float:
    t = time.perf_counter()
    ls.loss_on_batches(model, batches)
    return n_params * ls._n_examples(batches) / (time.perf_counter() - t)


def gemm_floor(model, batches, points: int, reps: int = 3) -> float:
    """Seconds the slice's matrix products alone take: every nn.Linear of the model on inputs of the
    exact (rows, features) shapes the probe feeds it, timed without the rest of the network."""
    shapes = [(int(b["input_ids"].numel()), int(b["input_ids"].shape[0])) for b in batches]
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    work = []
    for tokens, rows in shapes:
        for name, m in linears:  # the head (and a [CLS] pooler) see one row per example, the encoder every token
            n = rows if "classifier" in name or "pooler" in name else tokens
            work.append((torch.randn(n, m.in_features), m))
    best = float("inf")
    with torch.inference_mode():
        for _ in range(reps):
            t = time.perf_counter()
            for x, m in work:
                m(x)
            best = min(best, time.perf_counter() - t)
    return best * points


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 points on 64 examples, eigenvalue on 16 examples")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=ls.ProbeSettings.batch_size)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=("slice", "eigen"), default=None, help="run one of the two probes")
    ap.add_argument("--json", default="", help="also write the numbers to this file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    points, n_slice, n_eig, iters = (5, 64, 16, 20) if args.quick else (41, 512, 256, 20)

    # The attention kernels `probe_run` picks: fused (sdpa) for slices, eager for double backprop.
    model, tok = load_model(ModelConfig(name="minilm"), 2, attn_implementation="sdpa")
    model.eval().float()
    eager, _ = load_model(ModelConfig(name="minilm"), 2, attn_implementation="eager")
    eager.load_state_dict(model.state_dict())
    eager.eval().float()
    split = load_dataset(DataConfig(source="builtin")).splits["validation"]
    n_params = sum(p.numel() for p in model.parameters())
    ours_s = ls.fixed_batches(split, tok, n_slice, args.batch_size, args.max_length, args.seed)
    naive_s = naive_batches(split, tok, n_slice, args.batch_size, args.max_length, args.seed)
    ours_e = ls.fixed_batches(split, tok, n_eig, args.batch_size, args.max_length, args.seed)
    naive_e = naive_batches(split, tok, n_eig, args.batch_size, args.max_length, args.seed)
    before = copy.deepcopy(model.state_dict())

    res = {"quick": args.quick, "threads": torch.get_num_threads(), "n_params": n_params,
           "padding_uegr": padding_share(ours_s), "padding_naive": padding_share(naive_s),
           "forward_rate": forward_rate(model, ours_s, n_params)}
    print(f"MiniLM {n_params / 1e6:.1f}M params, {res['threads']} threads; padding share: "
          f"uegr {res['padding_uegr']:.0%}, plain loader {res['padding_naive']:.0%}; forward rate "
          f"{res['forward_rate']:.3g} param-examples/s", flush=True)
    if args.only != "eigen":
        res["slice"] = bench_slice(model, ours_s, naive_s, points, 1.0, args.seed)
        s = res["slice"]
        print(f"1-D slice, {points} points x {n_slice} examples: uegr {s['uegr_s']:.1f} s"
              + (f" | loss-landscapes {s['loss_landscapes_s']:.1f} s | ratio {s['ratio']:.2f}x" if "ratio" in s
                 else f" | {s.get('baseline')}"), flush=True)
        s["gemm_floor_s"] = gemm_floor(model, ours_s, points)
        print(f"the same matrix products alone (no attention, norms or activations): {s['gemm_floor_s']:.1f} s",
              flush=True)
        s["estimate_s"] = ls.estimate_cost("slice1d", {"points": points}, n_params, n_slice)
        print(f"estimate_cost said {s['estimate_s']:.1f} s", flush=True)
    if args.only != "slice":
        res["eigen"] = bench_eigen(eager, ours_e, naive_e, iters, args.seed)
        e = res["eigen"]
        line = (f"top eigenvalue, <= {iters} iterations x {n_eig} examples: uegr {e['uegr_s']:.1f} s "
                f"({e['uegr_iterations']} it, {e['uegr_eigenvalue']:.4g}); cached graph {e['uegr_cached_s']:.1f} s "
                f"({e['uegr_cached_iterations']} it)")
        if "ratio" in e:
            line += (f" | PyHessian {e['pyhessian_s']:.1f} s ({e['pyhessian_iterations']} it, "
                     f"{e['pyhessian_eigenvalue']:.4g}) | ratio {e['ratio']:.2f}x, cached {e['ratio_cached']:.2f}x, "
                     f"per iteration {e['ratio_per_iteration']:.2f}x")
        else:
            line += f" | {e.get('baseline')}"
        print(line, flush=True)
        e["estimate_s"] = ls.estimate_cost("hessian", {"iters": iters, "samples": 0}, n_params, n_eig)
        print(f"estimate_cost said (upper bound) {e['estimate_s']:.1f} s", flush=True)
    for m in (model, eager):
        after = m.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), "uegr probes changed the weights"
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
