"""Loss-landscape probes against exact answers on tiny models (seconds on CPU)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from uegr import landscape as ls
from uegr.models import build_tiny_bert, install_pooling


class TinyMLP(nn.Module):
    """3 -> 5 -> 3 tanh MLP: 38 parameters, forward(x=...) returns logits."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1 = nn.Linear(3, 5)
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def mlp_batches(seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(24, 3, generator=g)
    y = torch.randint(0, 3, (24,), generator=g)
    return [{"x": x[:16], "labels": y[:16]}, {"x": x[16:], "labels": y[16:]}]  # unequal batch sizes


def exact_hessian(model: nn.Module, batches: list[dict], names: list[str]) -> torch.Tensor:
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    flat0 = torch.cat([params[n].detach().reshape(-1) for n in names]).double()
    model = model.double().eval()

    def f(flat):
        tensors, i = {}, 0
        for n, s in zip(names, shapes):
            tensors[n] = flat[i:i + s.numel()].reshape(s)
            i += s.numel()
        total, count = 0.0, 0
        for b in batches:
            inputs = {k: (v.double() if v.is_floating_point() else v) for k, v in b.items() if k != "labels"}
            out = functional_call(model, tensors, (), inputs)
            logits = out.logits if hasattr(out, "logits") else out
            total = total + F.cross_entropy(logits, b["labels"], reduction="sum")
            count += len(b["labels"])
        return total / count

    h = torch.autograd.functional.hessian(f, flat0)
    model.float()
    return h


def top_by_magnitude(h: torch.Tensor, k: int = 1) -> list[float]:
    ev = torch.linalg.eigvalsh((h + h.T) / 2)
    return [float(v) for v in sorted(ev.tolist(), key=abs, reverse=True)[:k]]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny graphs are dominated by thread hand-offs on a shared 2-core machine: run them on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_top_eigenvalues_match_exact_hessian_mlp():
    model, batches = TinyMLP(), mlp_batches()
    names = [n for n, _ in ls.select_params(model)]
    exact = top_by_magnitude(exact_hessian(model, batches, names), 2)
    got = ls.top_eigenvalues(model, batches, k=2, iters=200, tol=1e-7, seed=1)
    assert all(got["converged"])
    assert got["eigenvalues"][0] == pytest.approx(exact[0], rel=0.01)
    assert got["eigenvalues"][1] == pytest.approx(exact[1], rel=0.01)  # deflation finds the second


def test_hutchinson_trace_matches_exact_trace():
    model, batches = TinyMLP(), mlp_batches()
    one = [{"x": torch.cat([b["x"] for b in batches]), "labels": torch.cat([b["labels"] for b in batches])}]
    exact = float(torch.trace(exact_hessian(model, one, [n for n, _ in ls.select_params(model)])))
    tr = ls.hessian_trace(model, one, samples=2000, seed=0, cache_graph=True)
    assert tr["trace"] == pytest.approx(exact, rel=0.05)
    assert abs(tr["trace"] - exact) < 3 * tr["stderr"] and tr["samples"] == 2000


def test_hvp_matches_exact_hessian_product():
    model, batches = TinyMLP(), mlp_batches()
    names = [n for n, _ in ls.select_params(model)]
    h = exact_hessian(model, batches, names)
    g = torch.Generator().manual_seed(3)
    vec = {n: torch.randn(p.shape, generator=g) for n, p in ls.select_params(model)}
    got = ls.hvp(model, batches, vec)
    flat = torch.cat([got[n].reshape(-1) for n in names]).double()
    want = h @ torch.cat([vec[n].reshape(-1) for n in names]).double()
    assert torch.allclose(flat, want, rtol=1e-4, atol=1e-6)


def tiny_bert_batches(n: int = 12, length: int = 7, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 2000, (n, length), generator=g)
    mask = torch.ones_like(ids)
    mask[: n // 2, -2:] = 0  # some padding
    labels = torch.randint(0, 2, (n,), generator=g)
    half = n // 2
    return [{"input_ids": ids[a:b], "attention_mask": mask[a:b], "token_type_ids": torch.zeros_like(ids[a:b]),
             "labels": labels[a:b]} for a, b in ((0, half), (half, n))]


def test_top_eigenvalue_tiny_bert_param_subset():
    model = build_tiny_bert(2, hidden=8, layers=1, seed=0)
    batches = tiny_bert_batches()
    subset = ["classifier.weight", "classifier.bias"]
    exact = top_by_magnitude(exact_hessian(model, batches, sorted(subset)))[0]
    got = ls.top_eigenvalues(model, batches, k=1, iters=100, tol=1e-7, seed=0, params=subset)
    assert got["n_params"] == 8 * 2 + 2 and got["converged"] == [True]
    assert got["eigenvalues"][0] == pytest.approx(exact, rel=0.01)
    cached = ls.top_eigenvalues(model, batches, k=1, iters=100, tol=1e-7, seed=0, params=subset, cache_graph=True)
    assert cached["eigenvalues"][0] == pytest.approx(got["eigenvalues"][0], rel=1e-4)
    assert all(p.requires_grad for p in model.parameters())  # flags restored


def test_filter_normalised_direction_rows():
    model = build_tiny_bert(2, hidden=8, layers=1, seed=0)
    d = ls.random_direction(model, seed=5)
    params = dict(model.named_parameters())
    assert set(d) == set(params)
    for n, t in d.items():
        w = params[n].detach()
        if w.dim() <= 1:
            assert not t.any(), n
        else:
            rows_d, rows_w = t.reshape(t.shape[0], -1).norm(dim=1), w.reshape(w.shape[0], -1).norm(dim=1)
            assert torch.allclose(rows_d, rows_w, rtol=1e-4, atol=1e-6), n
    d1 = ls.random_direction(model, seed=5, skip_1d=False)
    assert torch.equal(d1["classifier.bias"], params["classifier.bias"].detach())


def test_same_seed_same_direction_across_models():
    a, b = build_tiny_bert(2, hidden=8, layers=1, seed=0), build_tiny_bert(2, hidden=8, layers=1, seed=1)
    assert not torch.equal(a.classifier.weight, b.classifier.weight)
    da = ls.random_direction(a, seed=7, filter_normalize=False, skip_1d=False)
    db = ls.random_direction(b, seed=7, filter_normalize=False, skip_1d=False)
    assert all(torch.equal(da[n], db[n]) for n in da)
    other = ls.random_direction(a, seed=8, filter_normalize=False)
    assert not torch.equal(da["classifier.weight"], other["classifier.weight"])
    # with filter normalisation, the directions agree up to the per-row scale of each model's weights
    fa, fb = ls.random_direction(a, seed=7), ls.random_direction(b, seed=7)
    n = "bert.encoder.layer.0.attention.self.query.weight"
    unit = [t[n] / t[n].norm(dim=1, keepdim=True) for t in (fa, fb)]
    assert torch.allclose(unit[0], unit[1], atol=1e-6)
    # a parameter subset draws the same tensors as the full direction
    sub = ls.random_direction(a, seed=7, filter_normalize=False, skip_1d=False, params=[n])
    assert torch.equal(sub[n], da[n])


def test_slice_1d_at_zero_is_loss_and_weights_restored():
    model = build_tiny_bert(2, hidden=8, layers=1, seed=0)
    batches = tiny_bert_batches()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = ls.loss_on_batches(model, batches)
    ticks = []
    d = ls.random_direction(model, seed=0)
    out = ls.slice_1d(model, batches, d, [-1.0, 0.0, 0.5], progress=lambda i, n: ticks.append((i, n)))
    assert out[1] == pytest.approx(loss, abs=1e-6)
    assert out[0] != pytest.approx(loss)
    assert ticks[-1] == (3, 3)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    grid = ls.slice_2d(model, batches, d, ls.random_direction(model, seed=1), [0.0, 0.3], [0.0, 0.3])
    assert grid[0][0] == pytest.approx(loss, abs=1e-6)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    # a stop request ends the slice, keeps the partial result and still restores the weights
    calls = iter([False, False, True])
    with pytest.raises(ls.ProbeStopped) as info:
        ls.slice_1d(model, batches, d, [0.1, 0.2, 0.3, 0.4], should_stop=lambda: next(calls))
    assert len(info.value.partial) == 2
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert model.training  # train mode restored


def test_threaded_loss_matches_one_pass_with_mean_pooling():
    """Workers share one model; each batch has its own length, so a mask handed to the wrong thread's
    pooler would fail or change the loss. Reference: every example alone, without padding."""
    model = install_pooling(build_tiny_bert(2, hidden=8, layers=1, seed=0), "mean").eval()
    g = torch.Generator().manual_seed(3)
    batches, singles = [], []
    for length in (3, 9, 4, 12, 6, 5, 11, 7):
        ids = torch.randint(1000, 2000, (3, length), generator=g)
        mask = torch.ones_like(ids)
        mask[0, length // 2:] = 0
        labels = torch.randint(0, 2, (3,), generator=g)
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
        for i in range(3):
            keep = mask[i].bool()
            singles.append({"input_ids": ids[i:i + 1, keep], "attention_mask": mask[i:i + 1, keep],
                            "labels": labels[i:i + 1]})
    reference = ls.loss_on_batches(model, singles, workers=1)
    assert ls.loss_on_batches(model, batches, workers=1) == pytest.approx(reference, abs=1e-6)
    for _ in range(5):
        assert ls.loss_on_batches(model, batches, workers=2) == pytest.approx(reference, abs=1e-6)
    assert torch.get_num_threads() == 1  # the fixture's setting is restored after the workers ran


def test_interpolate_endpoints_and_mismatch():
    a, b = build_tiny_bert(2, hidden=8, layers=1, seed=0), build_tiny_bert(2, hidden=8, layers=1, seed=1)
    batches = tiny_bert_batches()
    out = ls.interpolate(a, b, batches, [0.0, 0.5, 1.0])
    assert out[0] == pytest.approx(ls.loss_on_batches(a, batches), abs=1e-6)
    assert out[2] == pytest.approx(ls.loss_on_batches(b, batches), abs=1e-5)
    with pytest.raises(ls.LandscapeError, match="same architecture"):
        ls.interpolate(a, build_tiny_bert(3, hidden=8, layers=1), batches, [0.0])
    with pytest.raises(ls.LandscapeError, match="do not share"):
        ls.interpolate(a, build_tiny_bert(2, hidden=8, layers=2), batches, [0.0])
    with pytest.raises(ls.LandscapeError, match="does not fit"):
        ls.slice_1d(a, batches, ls.random_direction(build_tiny_bert(3, hidden=8, layers=1)), [0.0])


def test_sharpness_measures():
    model, batches = TinyMLP(), mlp_batches()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sam = ls.sam_sharpness(model, batches, rho=1e-3)
    assert sam["sharpness"] == pytest.approx(1e-3 * sam["grad_norm"], rel=0.05)  # first order
    eps = ls.eps_sharpness(model, batches, eps=1e-2, steps=3)
    assert eps["sharpness"] > 0 and eps["max_loss"] >= eps["loss"]
    assert eps["loss"] == pytest.approx(ls.loss_on_batches(model, batches), abs=1e-6)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("kind", ["slice1d", "slice2d", "hessian", "sharpness", "interp"])
def test_probe_run_records_are_json(kind):
    model = build_tiny_bert(2, hidden=8, layers=1, seed=0)
    other = build_tiny_bert(2, hidden=8, layers=1, seed=1) if kind == "interp" else None
    settings = {"points": 3, "iters": 3, "samples": 2, "steps": 2}
    rec = ls.probe_run(model, kind, settings, batches=tiny_bert_batches(), other=other)
    json.dumps(rec, allow_nan=False)
    assert rec["kind"] == kind and rec["stopped"] is False and rec["seconds"] >= 0
    assert rec["settings"]["points"] == 3 and rec["n_examples"] == 12
    assert rec["estimated_seconds"] >= 0
    if kind == "hessian":
        assert len(rec["eigenvalues"]) == 1 and rec["trace_samples"] == 2
    if kind == "slice2d":
        assert len(rec["losses"]) == 3 and len(rec["losses"][0]) == 3


def test_probe_run_stop_and_estimate():
    model = build_tiny_bert(2, hidden=8, layers=1, seed=0)
    n = {"i": 0}

    def stop():
        n["i"] += 1
        return n["i"] > 2

    rec = ls.probe_run(model, "slice1d", {"points": 5}, batches=tiny_bert_batches(), should_stop=stop)
    assert rec["stopped"] is True and len(rec["losses"]) == 2
    assert ls.estimate_cost("slice2d", {"points": 5}, 1000, 10) > ls.estimate_cost("slice1d", {"points": 5}, 1000, 10)
    with pytest.raises(ls.LandscapeError):
        ls.estimate_cost("nope")
    with pytest.raises(ls.LandscapeError, match="unknown landscape setting"):
        ls.probe_run(model, "slice1d", {"pointz": 3}, batches=tiny_bert_batches())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from uegr.config import PRESETS, Config, apply_mapping
    from uegr.models import load_tokenizer, save_checkpoint
    from uegr.runs import RunStore

    root = tmp_path_factory.mktemp("runs")
    cfg = apply_mapping(Config(), PRESETS["tiny"])
    run = RunStore(root).create(cfg, "tiny")
    model = build_tiny_bert(2, hidden=8, layers=1, seed=0)
    save_checkpoint(model, load_tokenizer("minilm"), run.checkpoint_dir("best"))
    return root, run


def _cli(argv):
    parser = argparse.ArgumentParser()
    ls.add_landscape_parser(parser.add_subparsers())
    args = parser.parse_args(["landscape", *argv])
    return args.func(args)


def test_cli_writes_analysis_and_stops(tiny_run, tmp_path, capsys):
    root, run = tiny_run
    rc = _cli(["tiny", "--runs-dir", str(root), "--kind", "slice1d", "--examples", "8", "--points", "3",
               "--no-progress", "--json"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    saved = run.analyses("landscape-")["landscape-slice1d"]
    assert saved["losses"] == printed["losses"] and len(saved["losses"]) == 3 and saved["run"] == "tiny"
    stop = tmp_path / "STOP"
    stop.write_text("")
    assert _cli(["tiny", "--runs-dir", str(root), "--kind", "hessian", "--examples", "8", "--iters", "2",
                 "--stop-file", str(stop), "--no-progress"]) == 0
    assert run.analyses("landscape-")["landscape-hessian"]["stopped"] is True
    assert _cli(["tiny", "--runs-dir", str(root), "--kind", "interp", "--other", "tiny", "--examples", "8",
                 "--points", "2", "--no-progress"]) == 0


def test_cli_errors_are_one_line(tiny_run, capsys):
    root, _ = tiny_run
    assert _cli(["nope", "--runs-dir", str(root), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("uegr landscape: error: no run 'nope'") and "\n" not in err
    assert _cli(["tiny", "--runs-dir", str(root), "--kind", "interp", "--no-progress"]) == 2
    assert "--other" in capsys.readouterr().err
    assert _cli(["tiny", "--runs-dir", str(root), "--split", "dev", "--no-progress"]) == 2
    assert "split 'dev'" in capsys.readouterr().err
