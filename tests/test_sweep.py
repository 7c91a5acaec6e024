"""`uegr sweep` on Optuna with a tiny real BERT: CLI sweeps, shared storage, killed workers, pruning."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from uegr.cli import main
from uegr.runs import RunStore

REPO = Path(__file__).resolve().parents[1]
TINY = ["--preset", "tiny", "--set", "optim.max_steps=4", "--set", "runtime.eval_every=2"]


def _space(tmp_path, text="optim.lr: {low: 1.0e-4, high: 3.0e-3, log: true}\nmethod.k: {low: 1, high: 2}\n"):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def _env(runs_dir):
    return dict(os.environ, UEGR_HOME=str(runs_dir), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def _load(runs_dir, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{runs_dir}/sweeps/optuna.db")


def test_space_and_objective_errors_are_one_line_exit_2(runs_dir, tmp_path, capsys):
    cases = [("method.nope: {low: 1, high: 2}\n", "method.nope"),
             ("method.k: {low: 0, high: 3}\n", "method.k low=0"),
             ("optim.lr: {low: 0.0, high: 0.1, log: true}\n", "optim.lr"),
             ("method.keep_ratio: {low: 0.5, high: 0.2}\n", "low=0.5 must be below high=0.2"),
             ("method.adv_norm: {low: 1, high: 2}\n", "choices"),
             ("method.adv_norm: {choices: [linf_token, l3]}\n", "method.adv_norm choice='l3'")]
    for text, needle in cases:
        assert main(["sweep", "--study", "bad", "--space", _space(tmp_path, text), *TINY]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert main(["sweep", "--study", "bad", "--objective", "clean_acc,speed", *TINY]) == 2
    assert "'speed'" in capsys.readouterr().err
    assert main(["sweep", "--study", "bad", "--objective", "clean_acc,robust_acc", "--pruner", "median", *TINY]) == 2
    assert "multi-objective" in capsys.readouterr().err
    assert not (runs_dir / "bad-t0000").exists()


def test_three_trial_sweep_through_the_cli_and_its_reproducing_command(runs_dir, tmp_path, capsys):
    args = ["sweep", "--study", "s3", "--trials", "3", "--space", _space(tmp_path), "--seed", "0", "--json",
            "--objective", "clean_acc,robust_acc", "--set", "runtime.robust_eval_examples=6", "--budget-steps", "2",
            *TINY]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trials_done"] == 3 and out["complete"] == 3 and out["directions"] == ["maximize", "maximize"]
    assert out["best"], "a multi-objective study has a Pareto front"
    store = RunStore(runs_dir)
    study = _load(runs_dir, "s3")
    for t in study.trials:
        run = store.get(t.user_attrs["run"])  # every trial is an ordinary run, tagged with study and trial
        st = run.status()
        assert st["state"] == "completed" and st["sweep"]["study"] == "s3" and st["sweep"]["trial"] == t.number
        cfg = run.config()
        assert cfg.optim.lr == t.params["optim.lr"] and cfg.method.k == t.params["method.k"]
        assert [r["step"] for r in run.metrics("robust")] == [2]  # robust eval forced at eval_every
        assert st["step"] == 2  # --budget-steps

    best = out["best"][0]
    assert set(best["values"]) == {"clean_acc", "robust_acc"}
    cmd = shlex.split(best["command"])
    assert cmd[:2] == ["uegr", "train"]
    assert main([*cmd[1:], "--name", "repro", "--json", "--quiet"]) == 0
    capsys.readouterr()
    repro, trial_run = store.get("repro"), store.get(best["run"])
    assert repro.config().to_dict() == trial_run.config().to_dict()
    assert [e["accuracy"] for e in repro.metrics("eval")] == [e["accuracy"] for e in trial_run.metrics("eval")]

    # promote: the trial's parameters at full budget (4 steps), one run per seed
    assert main(["sweep", "--study", "s3", "--promote", str(best["trial"]), "--seeds", "2", "--json", "--quiet"]) == 0
    promoted = json.loads(capsys.readouterr().out)["runs"]
    assert [r["seed"] for r in promoted] == [42, 43]
    for r in promoted:
        run = store.get(r["run"])
        assert run.status()["step"] == 4 and run.status()["sweep"]["promoted"] is True
        assert run.config().optim.lr == best["params"]["optim.lr"] and "optim.max_steps=2" not in r["command"]

    # joining a finished study runs nothing and prints where it stands
    assert main(["sweep", "--study", "s3", "--json", "--trials", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["trials_done"] == 3


def test_two_worker_processes_on_one_storage_run_disjoint_trials(runs_dir, tmp_path):
    cmd = [sys.executable, "-m", "uegr.cli", "sweep", "--study", "w2", "--trials", "4", "--workers", "2",
           "--objective", "clean_acc", "--space", _space(tmp_path), "--json", "--preset", "tiny", "--seed", "0",
           "--set", "optim.max_steps=12", "--set", "runtime.eval_every=6"]
    proc = subprocess.run(cmd, env=_env(runs_dir), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    study = _load(runs_dir, "w2")
    done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 4 <= len(done) <= 5  # only two workers asking in the same instant can overshoot (see the test below)
    pids = {t.user_attrs["pid"] for t in study.trials}
    assert len(pids) == 2, "both workers ran trials"
    lrs = [t.params["optim.lr"] for t in study.trials]
    assert len(set(lrs)) == len(lrs), "workers seeded alike would propose the same parameters"
    runs = [t.user_attrs["run"] for t in study.trials]
    assert len(set(runs)) == len(runs)  # one run per trial, none shared
    store = RunStore(runs_dir)
    for t in study.trials:
        assert store.get(t.user_attrs["run"]).status()["sweep"]["trial"] == t.number
    progress = json.loads((runs_dir / "sweeps" / "w2" / "progress.json").read_text())
    assert progress["trials_done"] >= 4 and progress["trials_total"] == 4 and progress["best"]


def test_a_killed_worker_leaves_its_trial_failed_and_the_study_continues(runs_dir, tmp_path):
    cmd = [sys.executable, "-m", "uegr.cli", "sweep", "--study", "k", "--trials", "2", "--objective", "clean_acc",
           "--space", _space(tmp_path), "--quiet", "--preset", "tiny", "--set", "optim.max_steps=40",
           "--set", "runtime.eval_every=20"]
    worker = subprocess.Popen(cmd, env=_env(runs_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    status = runs_dir / "k-t0000" / "status.json"
    deadline = time.time() + 300
    while time.time() < deadline and worker.poll() is None:
        try:
            if json.loads(status.read_text()).get("state") == "running":
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    assert worker.poll() is None, "the worker ended before it could be killed: " + worker.stderr.read().decode()[-500:]
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    study = _load(runs_dir, "k")
    assert study.trials[0].state == TrialState.RUNNING  # what a kill leaves behind

    # the next worker fails the dead worker's trial at once (its pid is gone), retries it, and finishes the study
    join = [sys.executable, "-m", "uegr.cli", "sweep", "--study", "k", "--retry-failed", "--quiet", "--json"]
    proc = subprocess.run(join, env=_env(runs_dir),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    study = _load(runs_dir, "k")
    assert study.trials[0].state == TrialState.FAIL
    st = RunStore(runs_dir).get("k-t0000").status()
    assert st["state"] == "failed" and "died" in st["error"]
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 2
    retry = [t for t in done if t.system_attrs.get("failed_trial") == 0]
    assert len(retry) == 1 and retry[0].params == study.trials[0].params
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]


def test_a_pruned_trial_is_marked_pruned_in_the_study_and_in_its_run(runs_dir):
    from uegr.config import build_config
    from uegr.sweep import create_or_load, make_spec, resolve_storage, run_worker
    from uegr.sweep.space import parse_space

    store = RunStore(runs_dir)
    base = build_config("tiny", overrides=["optim.max_steps=8", "runtime.eval_every=2"])
    spec = make_spec(base, {"preset": "tiny"}, parse_space({"optim.lr": {"low": 1e-4, "high": 1e-3}}, base),
                     ["clean_acc"], trials=1)
    url = resolve_storage(None, store)
    # an accuracy can never reach 2: the threshold pruner stops the trial at its first evaluation
    study, spec = create_or_load("p", url, spec, store, pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    run_worker(study, spec, store, url, store.sweep_dir("p") / "progress.json")
    t = study.trials[0]
    assert t.state == TrialState.PRUNED and list(t.intermediate_values) == [2]
    run = store.get(t.user_attrs["run"])
    st = run.status()
    assert st["pruned"] is True and st["sweep"]["pruned"] is True and st["sweep"]["pruned_at"] == 2
    assert st["state"] == "stopped" and st["step"] == 2 and "pruned" in st["note"]
    assert max(r["step"] for r in run.metrics("train")) == 2
    progress = json.loads((store.sweep_dir("p") / "progress.json").read_text())
    assert progress["pruned"] == 1 and progress["trials_done"] == 1


@pytest.mark.parametrize("storage", ["journal.log"])
def test_a_journal_file_storage_works_too(runs_dir, tmp_path, capsys, storage):
    path = tmp_path / storage
    assert main(["sweep", "--study", "j", "--trials", "1", "--storage", str(path), "--objective", "clean_acc",
                 "--json", "--quiet", "--space", _space(tmp_path), *TINY]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["trials_done"] == 1 and out["storage"] == f"journal:{path}" and path.stat().st_size > 0


def test_enqueue_base_runs_the_base_setting_first_and_refuses_a_base_outside_the_space(runs_dir, tmp_path, capsys):
    space = _space(tmp_path, "optim.lr: {low: 1.0e-4, high: 3.0e-3, log: true}\nmethod.keep_ratio: {low: 0.1, high: 1.0}\n")
    base = [*TINY, "--set", "optim.lr=0.0007", "--set", "method.keep_ratio=0.45"]
    args = ["sweep", "--study", "eb", "--trials", "2", "--space", space, "--seed", "3", "--objective", "clean_acc",
            "--pruner", "none", "--enqueue-base", "--quiet", *base]
    assert main(args) == 0
    capsys.readouterr()
    trials = sorted(_load(runs_dir, "eb").trials, key=lambda t: t.number)
    assert trials[0].params == {"optim.lr": 0.0007, "method.keep_ratio": 0.45} and trials[0].user_attrs["base"]
    assert trials[1].params != trials[0].params and "base" not in trials[1].user_attrs
    run0 = RunStore(runs_dir).get(trials[0].user_attrs["run"]).config()
    assert (run0.optim.lr, run0.method.keep_ratio) == (0.0007, 0.45)
    outside = ["sweep", "--study", "eb-out", "--trials", "2", "--space", space, "--enqueue-base", *TINY,
               "--set", "optim.lr=0.01"]
    assert main(outside) == 2
    err = capsys.readouterr().err
    assert "optim.lr=0.01" in err and "--enqueue-base" in err and len(err.strip().splitlines()) == 1
    assert "eb-out" not in optuna.get_all_study_names(f"sqlite:///{runs_dir}/sweeps/optuna.db")


def test_pruner_options_reach_optuna_and_bad_ones_are_refused_before_a_study_exists(runs_dir, tmp_path, capsys):
    from uegr import config as C
    from uegr.sweep.space import load_space
    from uegr.sweep.study import _pruner, make_spec

    base = C.build_config("tiny", None, ["runtime.eval_every=5"])
    space = load_space(_space(tmp_path), base)
    pruner = _pruner(make_spec(base, {}, space, ["clean_acc"], 4, pruner="halving:bootstrap_count=1,reduction_factor=4"))
    assert (pruner._bootstrap_count, pruner._reduction_factor, pruner._min_resource) == (1, 4, 5)  # rung 0 = eval 1
    assert _pruner(make_spec(base, {}, space, ["clean_acc"], 4, pruner="median:n_warmup_steps=10"))._n_warmup_steps == 10
    for bad, needle in [("halving:foo=1", "bootstrap_count"), ("halving:reduction_factor=1", "reduction_factor"),
                        ("none:x=1", "takes no options"), ("quantum", "use one of")]:
        assert main(["sweep", "--study", "bad-pruner", "--pruner", bad, "--space", _space(tmp_path), *TINY]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (bad, err)
    assert not (runs_dir / "sweeps" / "optuna.db").exists() or "bad-pruner" not in optuna.get_all_study_names(
        f"sqlite:///{runs_dir}/sweeps/optuna.db")


def test_a_study_whose_every_trial_was_pruned_names_the_best_pruned_trial_to_promote(tmp_path):
    from uegr import config as C
    from uegr.sweep.space import load_space
    from uegr.sweep.study import best_pruned, make_spec, study_summary

    base = C.build_config("tiny", None, ["runtime.eval_every=5"])
    spec = make_spec(base, {}, load_space(_space(tmp_path), base), ["clean_acc"], 3)
    study = optuna.create_study(direction="maximize")
    for curve in ([0.5, 0.6], [0.5, 0.7, 0.65], [0.55]):  # last reported values 0.6, 0.65, 0.55
        t = study.ask({"optim.lr": optuna.distributions.FloatDistribution(1e-4, 3e-3, log=True)})
        for i, v in enumerate(curve):
            t.report(v, 5 * (i + 1))
        study.tell(t, state=TrialState.PRUNED)
    summary = study_summary(study, spec, "memory")
    assert summary["best"] == [] and summary["best_pruned"]["trial"] == 1
    assert (summary["best_pruned"]["step"], summary["best_pruned"]["value"]) == (15, 0.65)
    t = study.ask()
    study.tell(t, 0.6)
    assert best_pruned(study, "clean_acc") is None  # a complete trial is the study's answer


def test_a_worker_waits_for_a_peers_last_trial_and_takes_over_when_that_peer_dies(runs_dir, tmp_path):
    import socket

    from uegr import config as C
    from uegr.sweep.space import load_space
    from uegr.sweep.study import create_or_load, make_spec, run_worker

    base = C.build_config("tiny", None, ["optim.max_steps=2", "runtime.eval_every=2"])
    spec = make_spec(base, {}, load_space(_space(tmp_path), base), ["clean_acc"], 1, pruner="none", seed=0)
    store = RunStore(runs_dir)
    url = f"sqlite:///{runs_dir}/sweeps/optuna.db"
    study, spec = create_or_load("peer", url, spec, store)
    peer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(4)"])
    t = study.ask()  # the peer's trial: running, claimed by a live process on this host
    for k, v in {"pid": peer.pid, "host": socket.gethostname(), "claimed": t.number}.items():
        t.set_user_attr(k, v)
    started = time.time()
    assert run_worker(study, spec, store, url) == 1
    peer.wait()
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]  # no trial while the peer ran
    assert trials[1].datetime_start.timestamp() >= started + 3.5  # it waited for the peer to end
