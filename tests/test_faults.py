"""Fault injection: kill -9 at random moments and inside every step of a checkpoint/metrics/status write,
concurrent starts and resumes, torn and damaged files, read-only and full disks.

After each fault the run must be readable, say why it stopped, resume to the same numbers as an
uninterrupted run, and keep every line it wrote (in metrics.jsonl or metrics.discarded.jsonl).
Training processes are forked from tests/faultkit.py's server (imports paid once). Random trials:
UEGR_FAULT_TRIALS (default 3), seed UEGR_FAULT_SEED (default 0).
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from faultkit import ForkServer

from uegr.cli import main
from uegr.runs import RunError, RunStore, _step_of, pid_alive, safetensors_problem

REPO = Path(__file__).resolve().parents[1]
STEPS = 12
BASE = ["train", "--preset", "tiny", "--quiet", "--set", f"optim.max_steps={STEPS}",
        "--set", "runtime.checkpoint_every=2", "--set", "runtime.eval_every=4", "--set", "runtime.log_every=1"]


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", UEGR_HOME=str(root / "runs"))
    server = ForkServer(env)
    runs = root / "runs"
    assert server.run(BASE + ["--runs-dir", str(runs), "--name", "ref"], root / "ref.log") == 0
    train = RunStore(runs).get("ref").metrics("train")
    ref = {r["step"]: r["loss"] for r in train}
    assert sorted(ref) == list(range(1, STEPS + 1))
    epochs = [r["epoch"] for r in train]  # the run crosses an epoch boundary, and skips no epoch there
    assert epochs[-1] > 1 and len({round(b - a, 6) for a, b in zip(epochs, epochs[1:])}) == 1, epochs
    yield {"server": server, "root": root, "runs": runs, "ref": ref}
    server.close()


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


def check_after_kill(runs: Path, name: str) -> list[bytes]:
    """The killed run is readable, says it was interrupted, and whatever `last` names is loadable."""
    store = RunStore(runs)
    run = store.get(name)
    st = run.status()
    assert st["state"] == "interrupted" and "resume" in st["error"], st
    assert next(r for r in store.list() if r.name == name).summary()["state"] == "interrupted"
    run.config()  # readable
    logged = [json.loads(x) for x in _lines(run.metrics_path) if x.endswith(b"\n")]  # every complete line parses
    if run.has_checkpoint("last"):
        last = run.checkpoint_dir("last")
        assert safetensors_problem(last / "model.safetensors") is None
        step = torch.load(last / "trainer_state.pt", weights_only=True)["step"]
        assert step % 2 == 0 and step <= max([r["step"] for r in logged if r["kind"] == "train"], default=0)
    return _lines(run.metrics_path)


def check_resumed(lab, name: str, before: list[bytes]) -> None:
    """Resumed to the end: every step once, the same losses as the uninterrupted run, nothing lost."""
    runs = lab["runs"]
    rc = lab["server"].run(["train", "--name", name, "--resume", "--quiet", "--runs-dir", str(runs)],
                           lab["root"] / f"{name}.log")
    log = (lab["root"] / f"{name}.log").read_text()
    assert rc == 0 and "Traceback" not in log, log[-2000:]
    run = RunStore(runs).get(name)
    st = run.status()
    assert st["state"] == "completed" and st["step"] == STEPS
    train = run.metrics("train")
    assert [r["step"] for r in train] == list(range(1, STEPS + 1))  # no step twice, none missing
    for r in train:
        assert r["loss"] == pytest.approx(lab["ref"][r["step"]], rel=1e-5, abs=1e-7), r["step"]
    final, discarded = _lines(run.metrics_path), _lines(run.path / "metrics.discarded.jsonl")
    for line in before:  # nothing a run wrote is lost: each line is kept or moved aside
        assert line in final or (line if line.endswith(b"\n") else line + b"\n") in discarded, line
    ck = run.path / "checkpoints"
    assert sorted(p.name for p in ck.iterdir() if not p.name.startswith(".")) == ["best", "last"]
    assert sorted(p.name for p in ck.iterdir() if p.name.startswith(".")) == sorted(
        os.readlink(ck / w) for w in ("best", "last"))  # no partial or superseded folders left
    assert torch.load(ck / "last" / "trainer_state.pt", weights_only=True)["step"] == STEPS


def kill(lab, pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    assert lab["server"].wait(pid) == -signal.SIGKILL


# ------------------------------------------------------------------------------------------------ kill -9
PHASES = [  # (phase, step): where inside a write the kill lands
    ("state_half_written", 4),  # new checkpoint folder half written (model done, trainer_state.pt half)
    ("before_link", 6),         # new folder complete and renamed, link not yet swapped: adopted on resume
    ("before_drop", 8),         # link swapped, old folder not yet deleted (and an epoch boundary)
    ("torn_metrics", 5),        # half a metrics line on disk
    ("torn_metrics", 1),        # killed before the first checkpoint: resume trains again from step 0
    ("status_write", 4),        # a status.json temp file written, not renamed (the write after an eval)
]


@pytest.mark.parametrize("phase,step", PHASES, ids=[f"{p}-{s}" for p, s in PHASES])
def test_kill_inside_a_write_then_resume(lab, phase, step):
    name, marker = f"{phase}-{step}", lab["root"] / f"{phase}-{step}.marker"
    pid = lab["server"].spawn(BASE + ["--runs-dir", str(lab["runs"]), "--name", name], lab["root"] / f"{name}.log",
                              hook="pause", arg={"phase": phase, "marker": str(marker), "step": step})
    deadline = time.time() + 120
    while not marker.exists():
        alive = pid_alive(pid) and time.time() < deadline
        assert alive, (lab["root"] / f"{name}.log").read_text()[-2000:]
        time.sleep(0.02)
    kill(lab, pid)
    before = check_after_kill(lab["runs"], name)
    run = RunStore(lab["runs"]).get(name)
    if phase == "before_link":  # a complete, newer folder was left unlinked: resume adopts it
        assert run.resume_checkpoint().name.startswith(".last@0000006")
    if phase == "torn_metrics":
        assert not before[-1].endswith(b"\n")
    check_resumed(lab, name, before)
    if phase == "torn_metrics":
        assert before[-1] + b"\n" in _lines(run.path / "metrics.discarded.jsonl")


def test_kill_at_random_moments_then_resume(lab):
    """Random kill times over slowed-down checkpoint writes (so many kills land inside one)."""
    trials = int(os.environ.get("UEGR_FAULT_TRIALS", "3"))
    rng = random.Random(int(os.environ.get("UEGR_FAULT_SEED", "0")))
    outcomes = []
    for i in range(trials):
        name = f"random-{i}"
        pid = lab["server"].spawn(BASE + ["--runs-dir", str(lab["runs"]), "--name", name],
                                  lab["root"] / f"{name}.log", hook="slow_checkpoints", arg=0.3)
        time.sleep(rng.uniform(0.5, 3.5))
        os.kill(pid, signal.SIGKILL)
        rc = lab["server"].wait(pid)
        if rc == 0:  # finished before the kill
            outcomes.append("finished")
            continue
        before = check_after_kill(lab["runs"], name)
        run = RunStore(lab["runs"]).get(name)
        ck = run.checkpoints_dir
        linked = _step_of((ck / "last").resolve()) if (ck / "last").exists() else None
        newest = _step_of(run.resume_checkpoint().resolve()) if run.resume_checkpoint() else None
        where = ("inside a folder write" if list(ck.glob(".*.tmp")) else
                 "folder complete, link not swapped" if newest != linked else "between writes")
        outcomes.append((len(run.metrics("train")), linked, where))
        check_resumed(lab, name, before)
    print("random kills (steps logged, linked checkpoint step, where):", outcomes)


# ------------------------------------------------------------------------------------------------ concurrency
def test_concurrent_starts_and_resumes_one_wins(lab):
    runs, server = lab["runs"], lab["server"]
    for attempt in ("start", "resume"):
        argv = BASE + ["--runs-dir", str(runs), "--name", "twice"]
        if attempt == "resume":
            argv = ["train", "--name", "twice", "--resume", "--quiet", "--runs-dir", str(runs),
                    "--set", f"optim.max_steps={STEPS + 4}"]
        logs = [lab["root"] / f"twice-{attempt}-{i}.log" for i in range(2)]
        # Slow checkpoint writes keep the winner busy for seconds: on an idle machine a 4-step resume could
        # otherwise finish before the second process even asks for the lock (then it resumes a finished run).
        pids = [server.spawn(argv, log, hook="slow_checkpoints", arg=1.0) for log in logs]
        rcs = sorted(server.wait(p) for p in pids)
        assert rcs == [0, 2], [log.read_text()[-1500:] for log in logs]
        errors = [line for log in logs for line in log.read_text().splitlines() if "error" in line]
        assert len(errors) == 1 and ("in use by" in errors[0] or "already exists" in errors[0]), errors
    run = RunStore(runs).get("twice")
    assert [r["step"] for r in run.metrics("train")] == list(range(1, STEPS + 5))
    assert run.status()["state"] == "completed"


# ------------------------------------------------------------------------------------------------ damaged files
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 4-step run (checkpoint at 2 and 4) to copy and damage."""
    root = tmp_path_factory.mktemp("trained")
    assert main(["train", "--preset", "tiny", "--quiet", "--name", "done", "--runs-dir", str(root),
                 "--set", "optim.max_steps=4", "--set", "runtime.checkpoint_every=2",
                 "--set", "runtime.eval_every=2"]) == 0
    return root / "done"


@pytest.fixture
def store(trained, runs_dir):
    runs_dir.mkdir()
    shutil.copytree(trained, runs_dir / "r", symlinks=True)
    return RunStore(runs_dir)


def one_line_error(capsys, rc, *needles):
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


def snapshot(run_path: Path) -> dict:
    return {str(p.relative_to(run_path)): (p.read_bytes() if p.is_file() else os.readlink(p))
            for p in sorted(run_path.rglob("*")) if p.is_file() or p.is_symlink()}


def test_names_are_names_never_paths(store, tmp_path, capsys, monkeypatch):
    model = tmp_path / "mymodel"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    monkeypatch.chdir(tmp_path)
    for name in ("./mymodel", "mymodel/", str(model), "..", "a/b", ".hidden", "x" * 101):
        rc = main(["train", "--preset", "tiny", "--name", name, "--quiet"])
        one_line_error(capsys, rc, "not allowed")
        with pytest.raises(RunError):
            store.get(name)
    rc = main(["train", "--name", str(model), "--resume"])
    one_line_error(capsys, rc, "not a path")
    assert (model / "config.json").read_text() == '{"model_type": "bert"}' and len(list(model.iterdir())) == 1
    (store.root / "link").symlink_to(model)  # a symlink inside the runs folder to a folder elsewhere
    with pytest.raises(RunError, match="outside"):
        store.get("link")


def test_failed_resume_changes_nothing(store, capsys):
    run = store.get("r")
    before = snapshot(run.path)
    for override in ("model.tiny_layers=3", "data.max_length=48", "method.name=vanilla", "optim.seed=5",
                     "optim.batch_size=4"):
        rc = main(["train", "--name", "r", "--resume", "--set", override, "--quiet"])
        one_line_error(capsys, rc, override.split("=")[0], "new run")
    rc = main(["train", "--name", "r", "--resume", "--set", "optim.lr=nan", "--quiet"])
    one_line_error(capsys, rc)  # refused by config validation or by the optimizer: either way before any write
    if not torch.cuda.is_available():
        rc = main(["train", "--name", "r", "--resume", "--set", "runtime.device=cuda", "--quiet"])
        one_line_error(capsys, rc, "runtime.device", "'cpu'")
    assert snapshot(run.path) == before and run.status()["state"] == "completed"


@pytest.mark.parametrize("damage", ["truncated", "missing", "gzip-garbage", "state-garbage"])
def test_damaged_checkpoint_is_named_and_restart_recovers(store, capsys, damage):
    run = store.get("r")
    last, best = run.checkpoint_dir("last"), run.checkpoint_dir("best")
    target = last / ("trainer_state.pt" if damage == "state-garbage" else "model.safetensors")
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[:5000])
    elif damage == "missing":
        target.unlink()
    else:
        target.write_bytes(gzip.compress(os.urandom(4000)))
    before = snapshot(run.path)
    rc = main(["train", "--name", "r", "--resume", "--quiet"])
    one_line_error(capsys, rc, str(target), "--restart")
    assert snapshot(run.path) == before
    if damage != "state-garbage":
        rc = main(["predict", "r", "fine", "--checkpoint", "last"])
        one_line_error(capsys, rc, str(last))
        assert main(["runs"]) == 0
        assert "damaged" in capsys.readouterr().out
        # best is intact: predict still works from it
        (best / "model.safetensors").write_bytes((best / "model.safetensors").read_bytes()[:-10])
        rc = main(["predict", "r", "fine"])
        one_line_error(capsys, rc, "model.safetensors", "truncated")
    assert main(["train", "--name", "r", "--resume", "--restart", "--quiet", "--set", "optim.max_steps=4"]) == 0
    assert [r["step"] for r in run.metrics("train")] == [1, 2, 3, 4] and run.status()["state"] == "completed"
    assert safetensors_problem(run.checkpoint_dir("last") / "model.safetensors") is None


@pytest.mark.parametrize("damage", ["garbage", "empty", "wrong-type", "missing"])
def test_damaged_config_json_is_named(store, capsys, damage):
    run = store.get("r")
    path = run.path / "config.json"
    {"garbage": lambda: path.write_bytes(b"\x00{not json"), "empty": lambda: path.write_text(""),
     "wrong-type": lambda: path.write_text('{"optim": {"lr": "fast"}}'), "missing": path.unlink}[damage]()
    before = snapshot(run.path)
    for argv in (["train", "--name", "r", "--resume", "--quiet"], ["predict", "r", "fine"], ["eval", "r"]):
        one_line_error(capsys, main(argv), str(path))
    assert main(["runs", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["state"] == "damaged" and "config.json" in row["error"]
    assert snapshot(run.path) == before


@pytest.mark.parametrize("damage", ["garbage", "empty", "no-state"])
def test_damaged_status_json_never_shows_queued(store, capsys, damage):
    run = store.get("r")
    path = run.path / "status.json"
    path.write_text({"garbage": '{"state": "compl', "empty": "", "no-state": "[1, 2]"}[damage])
    assert main(["runs", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["state"] == "damaged" and "status.json" in row["error"]
    one_line_error(capsys, main(["stop", "r"]), "status.json")
    assert not run.stop_path.exists()
    # resuming rewrites it; the damaged copy is kept beside it
    assert main(["train", "--name", "r", "--resume", "--quiet"]) == 0
    assert run.status()["state"] == "completed"
    assert len(list(run.path.glob("status.json.damaged-*"))) == 1


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(store, capsys, monkeypatch):
    import uegr.trainer as T

    run = store.get("r")
    real = T.save_checkpoint

    def full(model, tok, folder):
        real(model, tok, folder)
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(folder) / "model.safetensors"))

    monkeypatch.setattr(T, "save_checkpoint", full)
    rc = main(["train", "--name", "r", "--resume", "--quiet", "--set", "optim.max_steps=8"])
    one_line_error(capsys, rc, "disk is full", "model.safetensors", "resume")
    st = run.status()
    assert st["state"] == "failed" and "No space left" in st["error"]
    assert torch.load(run.checkpoint_dir("last") / "trainer_state.pt", weights_only=True)["step"] == 4
    assert not [p for p in run.checkpoints_dir.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(T, "save_checkpoint", real)  # space freed
    assert main(["train", "--name", "r", "--resume", "--quiet", "--set", "optim.max_steps=8"]) == 0
    assert [r["step"] for r in run.metrics("train")] == list(range(1, 9))


def test_unwritable_folder_is_a_one_line_error(runs_dir, capsys, monkeypatch):
    import uegr.runs as R

    def refuse(path, data):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(R, "atomic_write_bytes", refuse)
    rc = main(["train", "--preset", "tiny", "--name", "ro", "--quiet"])
    one_line_error(capsys, rc, "Permission denied", "not writable", "--runs-dir")
    assert not (runs_dir / "ro").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_runs_folder(store, capsys):
    os.chmod(store.root, 0o555)
    os.chmod(store.get("r").path, 0o555)
    try:
        one_line_error(capsys, main(["train", "--preset", "tiny", "--name", "new", "--quiet"]), "not writable")
        one_line_error(capsys, main(["train", "--name", "r", "--resume", "--quiet"]), "not writable")
    finally:
        os.chmod(store.get("r").path, 0o755)
        os.chmod(store.root, 0o755)


# ------------------------------------------------------------------------------------------------ stop
def test_stop_while_queued_is_honoured_and_stop_on_a_finished_run_says_so(store, capsys, monkeypatch):
    from uegr.config import build_config

    assert main(["stop", "r"]) == 0  # finished: nothing written
    assert "nothing to stop" in capsys.readouterr().out and not store.get("r").stop_path.exists()

    cfg = build_config("tiny", overrides=["optim.max_steps=4"])
    q = store.create(cfg, "q")  # queued, as the app creates it; its launcher is alive (this process)
    q.set_status(launcher_pid=os.getpid())
    assert main(["stop", "q"]) == 0 and "will not train" in capsys.readouterr().out
    assert q.status()["state"] == "queued" and q.stop_requested()
    assert main(["train", "--name", "q", "--config", str(q.path / "config.json"), "--quiet"]) == 0  # app's child
    assert q.status()["state"] == "stopped" and not q.metrics() and not q.stop_requested()

    nobody = store.create(cfg, "nobody")  # queued, nobody will start it: stopped at once
    assert main(["stop", "nobody"]) == 0 and nobody.status()["state"] == "stopped"
    monkeypatch.setattr("uegr.cli._STARTED", time.time())  # a new `uegr train` process starts here
    assert main(["train", "--name", "nobody", "--resume", "--quiet"]) == 0  # no dead end: trains from step 0
    assert nobody.status()["state"] == "completed" and len(nobody.metrics("train")) == 4


def test_legacy_temporary_checkpoint_is_recovered(store, capsys):
    """A crash of the old code between deleting `last` and renaming `.last.tmp` left only the temp copy."""
    run = store.get("r")
    ck = run.checkpoints_dir
    target = ck / os.readlink(ck / "last")
    (ck / "last").unlink()
    target.rename(ck / ".last.tmp")
    assert run.resume_checkpoint() == ck / ".last.tmp"
    assert main(["train", "--name", "r", "--resume", "--quiet", "--set", "optim.max_steps=6"]) == 0
    assert [r["step"] for r in run.metrics("train")] == list(range(1, 7))
    assert not (ck / ".last.tmp").exists() and (ck / "last").is_symlink()


def test_metrics_reader_starts_over_when_a_resume_rewrites_the_file(tmp_path):
    from app.charts import RunSeries
    from uegr.runs import Run

    run = Run(tmp_path)
    run.append_metrics([{"kind": "train", "step": s, "loss": 1.0 / s} for s in (1, 2, 3, 4)])
    with run.metrics_path.open("a") as fh:
        fh.write('{"kind": "train", "st')  # torn by a kill
    series = RunSeries(run)
    assert series.update() == 4
    assert run.trim_metrics(2) == 3  # steps 3, 4 and the torn line move aside
    run.append_metrics([{"kind": "train", "step": 3, "loss": 0.5}])
    series.update()
    assert list(series.cols[("train", "loss")][0]) == [1, 2, 3]  # no step twice on the live chart
    moved = (tmp_path / "metrics.discarded.jsonl").read_text().splitlines()
    assert json.loads(moved[0])["kind"] == "discarded" and moved[-1] == '{"kind": "train", "st'


def test_abandoned_creation_folders_are_cleaned_after_an_hour(store):
    from uegr.config import Config

    store.root.mkdir(parents=True, exist_ok=True)
    old, fresh = store.root / ".creating-a-0000dead", store.root / ".creating-b-0000beef"
    for p in (old, fresh):
        p.mkdir()
        (p / "config.json").write_text("{}")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    store.create(Config(), "c")
    assert not old.exists() and fresh.is_dir()  # a creation in progress elsewhere is left alone
    names = [r.name for r in store.list()]
    assert "c" in names and not any(n.startswith(".") for n in names)
