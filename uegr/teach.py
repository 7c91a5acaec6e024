"""The method's real training step, opened up for the Learn page.

Everything here drives `Trainer.train_step` — the step real training runs (`UEGR.step` for stage 1, then
`SelectiveUpdater` for stage 2, clipping and the trainer's optimizer) — on a Trainer built around a deep
copy of the given model. Nothing re-implements the method; it only observes it: `UEGR.last` holds what
stage 1 produced, the updater holds saliency and masks, and an optimizer step pre-hook (a public PyTorch
hook) sees the gradient the optimizer is about to apply.

- `walk_step`: one step, every part reported (tokens, perturbation, sub-models, losses, saliency, update).
- `Player`: N steps on a fixed small set of batches from the same weights (the Learn page's "play").
- `ladder`: the same batch and weights under vanilla -> + adversary -> + sub-models and JS -> + selective
  update, with what each rung adds to the loss, the gradient and the update.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import random
import time

import numpy as np
import torch
from torch.nn import functional as F

from .config import Config, DataConfig, MethodConfig, ModelConfig, OptimConfig, RuntimeConfig
from .data import Encoded, Split, TextDataset, load_dataset, make_collate
from .methods import adversary as adv
from .methods.base import as_floats
from .models import encoder_layer_prefixes, load_model, predict_logits
from .saliency import MaskedAdamW, SelectiveUpdater
from .trainer import Trainer
from .weights import relative_change

LABEL_NAMES = ["negative", "positive"]
HIST_MAX_ELEMENTS = 1_000_000  # the saliency histogram subsamples (evenly strided) above this many weights


def sample_batch(n: int = 8, offset: int = 0, max_words: int = 18) -> tuple[list[str], list[int], list[str]]:
    """n short sentences from the built-in data's validation split, alternating labels, deterministic.
    `offset` picks another batch of the same kind."""
    ds = load_dataset(DataConfig(source="builtin"))
    split = ds.splits["validation"]
    by_label: dict[int, list[int]] = {}
    for i, (t, y) in enumerate(zip(split.texts, split.labels)):
        if 4 <= len(t.split()) <= max_words:
            by_label.setdefault(y, []).append(i)
    labels_sorted = sorted(by_label)
    picked: list[int] = []
    j = offset * math.ceil(n / max(len(labels_sorted), 1))
    while len(picked) < n:
        for y in labels_sorted:
            pool = by_label[y]
            if len(picked) < n:
                picked.append(pool[j % len(pool)])
        j += 1
    return [split.texts[i] for i in picked], [split.labels[i] for i in picked], ds.label_names


def load_learn_model(name: str = "minilm", num_labels: int = 2, seed: int = 0):
    """(model, tokenizer) for the Learn page: MiniLM by default, 'tiny-bert' for fast tests."""
    return load_model(ModelConfig(name=name), num_labels, LABEL_NAMES[:num_labels] if num_labels == 2 else None,
                      seed=seed)


def _tolist(x: torch.Tensor) -> list:
    return x.detach().float().cpu().tolist()


def _eval_probs(model, inputs: dict, delta: torch.Tensor | None = None) -> torch.Tensor:
    with adv.add_to_embeddings(model, delta):
        return predict_logits(model, inputs).softmax(-1)


@contextlib.contextmanager
def isolated_rng(seed: int | None = None, state: dict | None = None):
    """Run a block on its own torch / python / numpy RNG streams and give the caller's back afterwards.
    The Trainer seeds the global generators; the Learn page must not disturb other sessions' streams.
    Yields a dict that holds the block's final RNG state on exit (to continue a stream later)."""
    saved = (torch.get_rng_state(), random.getstate(), np.random.get_state())
    out: dict = {}
    try:
        if state is not None:
            torch.set_rng_state(state["torch"])
            random.setstate(state["python"])
            np.random.set_state(state["numpy"])
        elif seed is not None:
            torch.manual_seed(seed)
        yield out
    finally:
        out.update(torch=torch.get_rng_state(), python=random.getstate(), numpy=np.random.get_state())
        torch.set_rng_state(saved[0])
        random.setstate(saved[1])
        np.random.set_state(saved[2])


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with n intra-op threads, then restore the count. On a shared 2-core machine one thread is
    the robust choice for an interactive step: with 2 threads and other jobs running, OpenMP's threads wait
    on each other and a MiniLM step went from 1 s to 33 s; with 1 thread it took 2.6 s (docs/benchmarks.md)."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def learn_config(method_cfg: MethodConfig, seed: int = 0, *, lr: float = 2e-5, weight_decay: float = 0.01,
                 grad_clip: float = 1.0, max_length: int = 64, batch_size: int = 8, horizon: int = 100) -> Config:
    """The training config the Learn page's steps run under: constant lr (no warm-up, so one step uses
    exactly `lr`), CPU, `horizon` steps for the schedule-based rate rules."""
    return Config(data=DataConfig(source="builtin", max_length=max_length), model=ModelConfig(name="learn"),
                  method=copy.deepcopy(method_cfg),
                  optim=OptimConfig(lr=lr, weight_decay=weight_decay, grad_clip=grad_clip, warmup_ratio=0.0,
                                    schedule="constant", max_steps=max(1, horizon), batch_size=batch_size,
                                    seed=seed),
                  runtime=RuntimeConfig(device="cpu", snapshot_saliency=False))


def make_trainer(model, tokenizer, texts: list[str], labels: list[int], cfg: Config) -> Trainer:
    """A Trainer (no run folder) that trains a deep copy of `model` on `texts`; the caller's model is never
    touched. Call under `isolated_rng`: the Trainer seeds the global generators."""
    work = copy.deepcopy(model)
    work.train()
    n = int(work.config.num_labels)
    names = [str(work.config.id2label.get(i, i)) for i in range(n)]
    data = TextDataset("learn", names, {"train": Split(list(texts), list(labels))})
    return Trainer(cfg, dataset=data, model=(work, tokenizer))


def collate_batch(tokenizer, texts: list[str], labels: list[int], max_length: int = 64) -> dict:
    """The batch exactly as the trainer collates it, rows in the given order."""
    enc = Encoded(Split(list(texts), list(labels)), tokenizer, max_length)
    return make_collate(tokenizer.pad_token_id or 0)([enc[i] for i in range(len(enc))])


def _inner(optimizer):
    """The torch optimizer inside Accelerate's wrapper (its public `.optimizer`)."""
    return getattr(optimizer, "optimizer", optimizer)


@contextlib.contextmanager
def before_optimizer_step(trainer: Trainer, fn):
    """Call fn() right before the trainer's optimizer updates the weights (gradients final: masked, clipped)."""
    handle = _inner(trainer.optimizer).register_step_pre_hook(lambda *_: fn())
    try:
        yield
    finally:
        handle.remove()


def walk_step(model, tokenizer, texts: list[str], labels: list[int], method_cfg: MethodConfig | None = None,
              seed: int = 0, *, lr: float = 2e-5, weight_decay: float = 0.01, grad_clip: float = 1.0,
              max_length: int = 64, hist_bins: int = 40, map_side: int = 32, keep_tensors: bool = False) -> dict:
    """Run ONE training step (Trainer.train_step) on a copy of `model`; return what each part produced.

    Deterministic under `seed`; the caller's RNG streams are left as they were. lr is the step's learning
    rate (constant schedule). With keep_tensors, "_tensors" holds weights before/after, masks and the
    no-decay names (for tests).
    """
    t_all = time.perf_counter()
    cfg = method_cfg or MethodConfig()
    config = learn_config(cfg, seed, lr=lr, weight_decay=weight_decay, grad_clip=grad_clip, max_length=max_length,
                          batch_size=len(texts))
    with isolated_rng(seed):
        trainer = make_trainer(model, tokenizer, texts, labels, config)
        work, method, updater = trainer.raw_model, trainer.method, trainer.updater
        optimizer = _inner(trainer.optimizer)
        prefixes = encoder_layer_prefixes(work)
        named = [(n, p) for n, p in work.named_parameters() if p.requires_grad]

        batch = collate_batch(tokenizer, texts, labels, max_length)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        y = batch["labels"]
        attention = inputs.get("attention_mask", torch.ones_like(inputs["input_ids"]))
        before = {n: p.detach().clone() for n, p in named}
        probs_before = _eval_probs(work, inputs)

        # Probe, untimed and without gradient: the step's perturbation on the pre-update weights.
        probe: dict = {}

        def observe() -> None:
            t = time.perf_counter()
            delta = method.last.get("delta")
            probe["adv"] = _eval_probs(work, inputs, delta) if delta is not None else None
            probe["seconds"] = time.perf_counter() - t

        t0 = time.perf_counter()
        with before_optimizer_step(trainer, observe):
            parts, grad_norm, refreshed = trainer.train_step(batch)  # the trainer's own step
        parts = as_floats(parts)
        step_seconds = time.perf_counter() - t0 - probe.get("seconds", 0.0)
        last = method.last
        saliency_report = _saliency_report(updater, hist_bins, map_side) if updater is not None else None
        after = {n: p.detach() for n, p in named}
        probs_after = _eval_probs(work, inputs)
        no_decay = {n for n, p in named for g in optimizer.param_groups
                    if g["weight_decay"] == 0 and any(q is p for q in g["params"])}

    # ---- what each part produced
    lengths = attention.sum(1).tolist()
    tokens = [tokenizer.convert_ids_to_tokens(row[:n]) for row, n in zip(inputs["input_ids"].tolist(), lengths)]
    clean_probs = last["clean_logits"].float().softmax(-1)
    sub_probs = last["sub_logits"].float().softmax(-1)
    members = len(last["rates"]) + int(cfg.js_include_clean)
    out: dict = {
        "texts": list(texts), "labels": list(labels), "tokens": tokens, "seed": seed,
        "num_labels": int(clean_probs.shape[-1]),
        "label_names": [work.config.id2label.get(i, str(i)) for i in range(int(clean_probs.shape[-1]))],
        "config": dataclasses.asdict(cfg), "lr": lr, "weight_decay": weight_decay,
        "clean_probs": _tolist(clean_probs),  # the training-mode clean pass (model dropout), as in the loss
        "probs_before_eval": _tolist(probs_before),  # dropout off, before the step
        "probs_after_eval": _tolist(probs_after),  # dropout off, after the step
        "adv_probs_eval": None if probe.get("adv") is None else _tolist(probe["adv"]),
        "rates": _tolist(last["rates"]), "sub_probs": _tolist(sub_probs),
        "mixture_probs": _tolist(sub_probs.mean(0)),
        "losses": {"clean": parts["clean"], "adv": parts["adv"], "js": parts["js"], "total": parts["loss"],
                   "lambda_adv": cfg.lambda_adv, "lambda_js": cfg.lambda_js, "js_members": members,
                   "js_bound": math.log(members)},
        "loss_before_eval": float(F.nll_loss(probs_before.clamp_min(1e-12).log(), y)),
        "loss_after_eval": float(F.nll_loss(probs_after.clamp_min(1e-12).log(), y)),
        "grad_norm": float(grad_norm), "mask_refreshed": bool(refreshed),
    }
    out["perturbation"] = _perturbation_report(last.get("grad_e"), last.get("delta"), attention, lengths, cfg)
    out["saliency"] = saliency_report
    out["update"] = _update_report(before, after, prefixes, updater, optimizer, lr)
    out["step_seconds"] = step_seconds
    out["total_seconds"] = time.perf_counter() - t_all
    if keep_tensors:
        out["_tensors"] = {"before": before, "after": {n: t.clone() for n, t in after.items()},
                           "masks": None if updater is None or updater.masks is None else
                           {n: m.clone() for (n, _), m in zip(updater.named, updater.masks)},
                           "no_decay": no_decay}
    return out


def _perturbation_report(grad_e, delta, attention, lengths, cfg: MethodConfig) -> dict | None:
    if delta is None:
        return None
    tok = attention.unsqueeze(-1).float()
    d = delta.float() * tok
    rep = {"norm": cfg.adv_norm, "eps": cfg.resolved_adv_eps(), "steps": cfg.adv_steps,
           "delta_l2": [r[:n] for r, n in zip(_tolist(d.norm(dim=-1)), lengths)],
           "delta_linf": [r[:n] for r, n in zip(_tolist(d.abs().amax(-1)), lengths)],
           "delta_total_l2": _tolist(d.flatten(1).norm(dim=1))}
    if grad_e is not None:
        g = grad_e.float() * tok
        rep["grad_l2"] = [r[:n] for r, n in zip(_tolist(g.norm(dim=-1)), lengths)]
    return rep


@torch.no_grad()
def _saliency_report(updater: SelectiveUpdater, bins: int, map_side: int) -> dict:
    """Histogram of log10 saliency (kept vs frozen, same bins), the keep threshold and the mask per tensor."""
    sal = [s if s is not None else torch.zeros_like(p, dtype=torch.float32)
           for s, (_, p) in zip(updater.saliency, updater.named)]
    masks = updater.reported_masks()
    flat = torch.cat([s.flatten() for s in sal]).float()
    keep = torch.cat([m.flatten() for m in masks]) if masks is not None else torch.ones_like(flat, dtype=torch.bool)
    pos = flat > 0
    rep: dict = {"kind": updater.cfg.saliency, "scope": updater.cfg.mask_scope, "rule": updater.cfg.mask_rule,
                 "keep_ratio": updater.cfg.keep_ratio, "numel": int(flat.numel()), "zeros": int((~pos).sum()),
                 "has_mask": masks is not None, "threshold_log10": None}
    if bool(pos.any()):
        if masks is not None and updater.cfg.mask_scope == "global" and updater.cfg.mask_rule == "topk":
            kept_min = float(torch.where(keep, flat, torch.full_like(flat, float("inf"))).min())
            rep["threshold_log10"] = math.log10(kept_min) if 0 < kept_min < float("inf") else None
        # The histogram counts every `stride`-th weight (all of them up to HIST_MAX_ELEMENTS) and scales back.
        stride = max(1, math.ceil(flat.numel() / HIST_MAX_ELEMENTS))
        f, kp = (flat[::stride], keep[::stride]) if stride > 1 else (flat, keep)
        ps = f > 0
        logs = torch.log10(f.clamp_min(torch.finfo(torch.float32).tiny))
        lo = math.log10(float(torch.where(pos, flat, torch.full_like(flat, float("inf"))).min()))
        hi = math.log10(float(flat.max()))
        hi = hi if hi > lo else lo + 1.0
        # One pass: bucket index * 2 + kept, counted with bincount; zero saliency goes to a dropped bucket.
        idx = ((logs - lo) * (bins / (hi - lo))).long().clamp_(0, bins - 1)
        idx = torch.where(ps, idx, torch.full_like(idx, bins))
        counts = torch.bincount(idx * 2 + kp.long(), minlength=2 * bins + 2)[: 2 * bins].view(bins, 2) * stride
        rep["hist_edges"] = torch.linspace(lo, hi, bins + 1, dtype=torch.float64).tolist()
        rep["hist_frozen"], rep["hist_kept"] = counts[:, 0].tolist(), counts[:, 1].tolist()
        rep["hist_stride"] = stride
    rows, maps = updater.snapshot(map_side)
    rep["rows"] = rows
    rep["kept_fraction"] = sum(r["kept"] for r in rows) / max(sum(r["numel"] for r in rows), 1)
    rep["maps"] = {k: v.tolist() for k, v in maps.items()}
    return rep


@torch.no_grad()
def _update_report(before, after, prefixes, updater, optimizer, lr: float) -> dict:
    """Relative change per tensor; for eligible tensors, kept vs frozen movement. Frozen elements may move
    only by weight decay (theta *= 1 - lr * wd under AdamW; not at all under MaskedAdamW)."""
    rows = relative_change(before, after, prefixes)
    decay_of = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            decay_of[id(p)] = group["weight_decay"]
    masks = {}
    if updater is not None and updater.masks is not None:
        masks = {n: (m, p) for (n, p), m in zip(updater.named, updater.masks)}
    by_name = {r["name"]: r for r in rows}
    kept_el = frozen_el = 0
    worst_excess = 0.0
    for name, (m, p) in masks.items():
        r = by_name.get(name)
        if r is None:
            continue
        b = before[name].float()
        d = after[name].float() - b
        wd = 0.0 if isinstance(optimizer, MaskedAdamW) else decay_of.get(id(p), 0.0)
        mf = m.float()
        kept, frozen = int(m.sum()), m.numel() - int(m.sum())
        absd = d.abs()
        kept_abs = float((absd * mf).sum())
        r["kept"], r["kept_fraction"] = kept, kept / m.numel()
        r["mean_abs_change_kept"] = kept_abs / kept if kept else 0.0
        r["mean_abs_change_frozen"] = (float(absd.sum()) - kept_abs) / frozen if frozen else 0.0
        # What weight decay alone does to a frozen element: -lr * wd * theta.
        r["frozen_excess"] = float(((d + lr * wd * b).abs() * (1 - mf)).max()) if frozen else 0.0
        worst_excess = max(worst_excess, r["frozen_excess"])
        kept_el += kept
        frozen_el += frozen
    for r in rows:
        r["selective"] = r["name"] in masks
    return {"rows": rows, "kept_elements": kept_el, "frozen_elements": frozen_el,
            "frozen_max_excess": worst_excess, "masked": bool(masks)}


# ---------------------------------------------------------------------------------------------- play
def sample_batches(n_batches: int = 4, size: int = 8, offset: int = 0) -> list[tuple[list[str], list[int]]]:
    """A fixed small set of batches for "play": `n_batches` batches of `size` built-in sentences."""
    out = []
    for i in range(n_batches):
        texts, labels, _ = sample_batch(size, offset + i)
        out.append((texts, labels))
    return out


class Player:
    """N real training steps on a fixed set of batches, from a copy of the given weights.

    One Trainer lives as long as the player, so the optimizer's moments, the saliency EMA, the mask and
    its refresh schedule carry over from step to step as in real training. Each `step()` runs
    `Trainer.train_step` on batch (step mod number of batches) and appends a record to `history`.
    Its RNG stream is its own (kept between steps), so two players with the same seed agree step by step.
    """

    def __init__(self, model, tokenizer, batches: list[tuple[list[str], list[int]]], method_cfg: MethodConfig,
                 seed: int = 0, *, lr: float = 2e-5, weight_decay: float = 0.01, grad_clip: float = 1.0,
                 max_length: int = 64, horizon: int = 100):
        if not batches:
            raise ValueError("Player needs at least one batch")
        self.method_cfg = method_cfg
        self.batches = [collate_batch(tokenizer, t, y, max_length) for t, y in batches]
        texts = [t for b, _ in batches for t in b]
        labels = [y for _, b in batches for y in b]
        config = learn_config(method_cfg, seed, lr=lr, weight_decay=weight_decay, grad_clip=grad_clip,
                              max_length=max_length, batch_size=len(batches[0][0]), horizon=horizon)
        with isolated_rng(seed) as rng:
            self.trainer = make_trainer(model, tokenizer, texts, labels, config)
        self._rng = rng
        self.history: list[dict] = []

    @property
    def steps_done(self) -> int:
        return self.trainer.step

    def step(self) -> dict:
        tr = self.trainer
        index = tr.step % len(self.batches)
        with isolated_rng(state=self._rng) as rng:
            t0 = time.perf_counter()
            parts, grad_norm, refreshed = tr.train_step(self.batches[index])  # the trainer's own step
            seconds = time.perf_counter() - t0
            tr.step += 1  # what Trainer._loop does after each step: the refresh schedule and progress read it
        self._rng = rng
        parts = as_floats(parts)
        k = sum(1 for name in parts if name.startswith("rate_"))
        rec = {"step": tr.step, "batch": index, "loss": parts["loss"], "clean": parts["clean"],
               "adv": parts.get("adv"), "js": parts.get("js"), "rates": [parts[f"rate_{i}"] for i in range(k)],
               "grad_norm": float(grad_norm), "refreshed": bool(refreshed), "seconds": seconds,
               "kept_fraction": None, "mask_iou": None, "matrices": []}
        up = tr.updater
        if up is not None and up.reported_masks() is not None:
            rows, _ = up.snapshot(1)  # per-matrix summaries; maps pooled to one cell (cheap)
            rec["kept_fraction"] = sum(r["kept"] for r in rows) / max(sum(r["numel"] for r in rows), 1)
            rec["matrices"] = [{"layer": r["layer"], "kind": r["kind"], "kept_fraction": r["kept_fraction"],
                                "saliency_mass": r["saliency_mass"]} for r in rows]
            if up.overlap_prev:
                inter = sum(i for i, _ in up.overlap_prev)
                union = sum(u for _, u in up.overlap_prev)
                rec["mask_iou"] = inter / union if union else 1.0
        self.history.append(rec)
        return rec


# ---------------------------------------------------------------------------------------------- ladder
RUNGS = ("vanilla", "+ adversary", "+ sub-models and JS", "+ selective update")


def ladder_configs(cfg: MethodConfig) -> list[tuple[str, MethodConfig]]:
    """The four rungs, each adding one part of the method on top of the last, with the user's knobs:
    vanilla fine-tuning; + one adversarial pass (K = 1, no JS); + K dropout sub-models and JS;
    + the selective update (the full method)."""
    r = dataclasses.replace
    base = r(cfg, name="uegr", adv_enabled=True, selective_update=False)
    return [(RUNGS[0], r(cfg, name="vanilla", selective_update=False)),
            (RUNGS[1], r(base, k=1, lambda_js=0.0, js_include_clean=False)),
            (RUNGS[2], base),
            (RUNGS[3], r(base, selective_update=True))]


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()  # float32 sums over 22 M elements drift by ~1e-6
    d = float(a.norm() * b.norm())
    return max(-1.0, min(1.0, float(a @ b) / d)) if d > 0 else float("nan")


def ladder(model, tokenizer, texts: list[str], labels: list[int], method_cfg: MethodConfig, seed: int = 0, *,
           lr: float = 2e-5, weight_decay: float = 0.01, grad_clip: float = 1.0, max_length: int = 64,
           progress=None) -> list[dict]:
    """One training step per rung (`ladder_configs`) on the same batch, weights and seed, each through
    Trainer.train_step with a fresh optimizer. Per rung: the loss parts; the gradient the optimizer applies
    (norm before clipping, cosine with vanilla's and with the previous rung's); the update Δθ (norm, cosines)
    and the fraction of weights the step moves (non-zero applied gradient; on Adam's first step exactly the
    weights that move, weight decay aside). `progress(i, name)` is called before each rung."""
    batch = collate_batch(tokenizer, texts, labels, max_length)
    rows: list[dict] = []
    first: tuple | None = None
    prev: tuple | None = None
    for i, (name, cfg) in enumerate(ladder_configs(method_cfg)):
        if progress is not None:
            progress(i, name)
        config = learn_config(cfg, seed, lr=lr, weight_decay=weight_decay, grad_clip=grad_clip,
                              max_length=max_length, batch_size=len(texts))
        with isolated_rng(seed):
            trainer = make_trainer(model, tokenizer, texts, labels, config)
            params = [p for p in trainer.raw_model.parameters() if p.requires_grad]
            before = torch.cat([p.detach().flatten().float() for p in params])
            seen: dict = {}

            def observe(params=params, seen=seen) -> None:
                seen["grad"] = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().float()
                                          for p in params])

            t0 = time.perf_counter()
            with before_optimizer_step(trainer, observe):
                parts, grad_norm, _ = trainer.train_step(batch)
            seconds = time.perf_counter() - t0
            update = torch.cat([p.detach().flatten().float() for p in params]) - before
        parts = as_floats(parts)
        grad = seen["grad"]
        up = trainer.updater
        rec = {"rung": name, "config": dataclasses.asdict(cfg), "seconds": seconds,
               "loss": parts["loss"], "clean": parts["clean"],
               "adv_term": cfg.lambda_adv * parts["adv"] if "adv" in parts else 0.0,
               "js_term": cfg.lambda_js * parts["js"] if "js" in parts else 0.0,
               "adv": parts.get("adv"), "js": parts.get("js"),
               "grad_norm": float(grad_norm), "update_norm": float(update.norm()),
               "moved_fraction": float((grad != 0).float().mean()),
               "kept_fraction": up.kept_fraction() if up is not None else None}
        if first is None:
            first = (grad, update)
        rec["grad_cos_vanilla"] = _cos(grad, first[0])
        rec["update_cos_vanilla"] = _cos(update, first[1])
        rec["grad_cos_previous"] = _cos(grad, prev[0]) if prev is not None else None
        rec["update_cos_previous"] = _cos(update, prev[1]) if prev is not None else None
        rec["loss_added"] = rec["loss"] - rows[-1]["loss"] if rows else None
        rows.append(rec)
        prev = (grad, update)
        del trainer
    return rows
