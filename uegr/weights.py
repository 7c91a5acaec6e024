"""How far weights moved, and how stable the update masks are.

- `relative_change(before, after, prefixes)`: ||theta - theta0|| / ||theta0|| per tensor, labelled by
  encoder layer and matrix kind (query, key, ..., ffn_out; embeddings and head outside the blocks).
- `run_weight_change(run)`: that, between a run's checkpoint and the pretrained weights it started
  from (the base model reloaded by the run's config: model name + seed, so a new classifier head is
  re-initialised exactly as the trainer did).
- `mask_iou(run)`: intersection over union of kept elements between consecutive mask refreshes. Exact
  when the snapshot rows carry `iou_prev` (written by `SelectiveUpdater` since it tracks the previous
  mask); for older snapshots an approximation from the downsampled mask maps (sum of per-cell minima
  over sum of per-cell maxima of the kept fractions; an upper bound of the exact IoU).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from .models import encoder_layer_prefixes, layer_index, matrix_kind
from .runs import Run


def tensor_group(name: str, prefixes: list[str]) -> tuple[int | None, str]:
    """(encoder layer or None, kind label). Outside the blocks: 'embeddings', 'pooler', 'classifier', ..."""
    li = layer_index(name, prefixes)
    if li is not None:
        return li, matrix_kind(name)
    n = name.lower()
    for key in ("embeddings", "pooler", "classifier", "pre_classifier", "score", "head"):
        if key in n:
            return None, key + ("_bias" if n.endswith("bias") else "")
    return None, n.rsplit(".", 1)[0]


@torch.no_grad()
def relative_change(before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor],
                    prefixes: list[str]) -> list[dict]:
    """One row per tensor present in both (same shape): name, layer, kind, numel, rel_change, delta_norm,
    ref_norm, max_abs_change. rel_change = ||after - before|| / ||before||; NaN when ||before|| = 0 (a bias or
    LayerNorm shift that starts at zero: read delta_norm instead)."""
    rows = []
    for name, b in before.items():
        a = after.get(name)
        if a is None or a.shape != b.shape or not b.is_floating_point():
            continue
        b32, a32 = b.detach().float().cpu(), a.detach().float().cpu()
        d = a32 - b32
        dn, rn = float(d.norm()), float(b32.norm())
        layer, kind = tensor_group(name, prefixes)
        rows.append({"name": name, "layer": layer, "kind": kind, "numel": b.numel(),
                     "rel_change": dn / rn if rn > 0 else float("nan"),
                     "delta_norm": dn, "ref_norm": rn, "max_abs_change": float(d.abs().max()) if d.numel() else 0.0})
    return rows


def _checkpoint_num_labels(folder: Path) -> tuple[int, list[str]]:
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    id2label = cfg.get("id2label") or {}
    names = [id2label[k] for k in sorted(id2label, key=lambda k: int(k))] if id2label else []
    return int(cfg.get("num_labels") or len(names) or 2), names


def run_weight_change(run: Run, which: str = "best") -> dict:
    """Relative change per tensor between the run's checkpoint (`which`, else the best available) and the
    pretrained weights. Returns {"checkpoint": path, "model": name, "seed": seed, "rows": [...]}.
    Raises RunError when the run has no checkpoint, ModelLoadError when the base model cannot load."""
    from safetensors.torch import load_file

    from .models import load_model

    folder = run.checkpoint_dir(which) if run.has_checkpoint(which) else run.best_checkpoint()
    cfg = run.config()
    num_labels, names = _checkpoint_num_labels(folder)
    base, _ = load_model(cfg.model, num_labels, names or None, seed=cfg.optim.seed)
    reference = dict(base.named_parameters())
    trained = load_file(str(folder / "model.safetensors"))
    rows = relative_change({n: p.detach() for n, p in reference.items()}, trained, encoder_layer_prefixes(base))
    return {"checkpoint": str(folder), "model": cfg.model.name, "seed": cfg.optim.seed, "rows": rows}


def _map_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Approximate IoU from two downsampled kept-fraction maps (same cell grid): sum min / sum max."""
    union = float(torch.maximum(a, b).sum())
    return float(torch.minimum(a, b).sum()) / union if union > 0 else 1.0


def mask_iou(run: Run) -> list[dict]:
    """One record per (refresh, tensor) after the first refresh: step, prev_step, name, layer, kind, iou,
    inter, union (exact counts, or None when approximate), exact (bool)."""
    out: list[dict] = []
    prev_step, prev_maps = None, {}
    for step in run.snapshot_steps():
        snap = run.read_snapshot(step, with_maps=True)
        maps = snap.get("maps", {})
        for r in snap["tensors"]:
            rec = {"step": step, "prev_step": prev_step, "name": r["name"], "layer": r["layer"], "kind": r["kind"]}
            if "iou_prev" in r:
                out.append({**rec, "iou": r["iou_prev"], "inter": r.get("inter_prev"), "union": r.get("union_prev"),
                            "exact": True})
                continue
            key = f"mask/{r['name']}"
            if prev_step is not None and key in maps and key in prev_maps and maps[key].shape == prev_maps[key].shape:
                out.append({**rec, "iou": _map_iou(maps[key], prev_maps[key]), "inter": None, "union": None,
                            "exact": False})
        prev_step, prev_maps = step, maps
    return out


def iou_summary(records: list[dict]) -> list[dict]:
    """Per step: overall IoU (exact: total intersection / total union; approximate: mean over tensors)
    and per-layer values. Returns [{"step", "layer" ("all" or int), "iou", "exact"}]."""
    by_step: dict[int, list[dict]] = {}
    for r in records:
        by_step.setdefault(r["step"], []).append(r)
    out = []
    for step, recs in sorted(by_step.items()):
        groups: dict = {"all": recs}
        for r in recs:
            groups.setdefault(r["layer"], []).append(r)
        for key, rs in groups.items():
            if all(r["exact"] and r["union"] is not None for r in rs):
                union = sum(r["union"] for r in rs)
                iou = sum(r["inter"] for r in rs) / union if union else 1.0
                exact = True
            else:
                iou = sum(r["iou"] for r in rs) / len(rs)
                exact = False
            out.append({"step": step, "layer": key, "iou": iou, "exact": exact})
    return out
