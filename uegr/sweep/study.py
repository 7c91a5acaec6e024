"""Studies on Optuna: storage, objectives, sampler, pruner, and the worker loop that trains each trial as an
ordinary run.

A study is created once with its base config (the resolved preset/config/--set), its search space, its
objectives and its trial budget, all kept in the Optuna storage (study user attribute "uegr"). Any number of
workers (`uegr sweep --study S --storage URL`, on this machine or others) then share it: each asks the
sampler for a trial, trains it in-process as a run named `<study>-t<number>` (status `sweep` = study and
trial), reports every evaluation of the first objective to the pruner, and stops when the study holds
`trials` finished (complete + pruned) trials. A worker killed mid-trial leaves a trial that is failed by
the next worker (same host: its pid is gone; any host: the RDB heartbeat is older than the grace period),
and with --retry-failed re-enqueued with the same parameters.
"""

from __future__ import annotations

import gc
import json
import os
import shlex
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import config as C
from .. import jobs
from ..callbacks import Callback
from ..runs import NAME_RE, Run, RunError, RunStore, _atomic_write, pid_alive
from .space import SpaceError, suggest

OBJECTIVES = {"clean_acc": "maximize", "robust_acc": "maximize", "harmonic": "maximize",
              "train_seconds": "minimize"}
SELECT_FOR = {"clean_acc": "clean", "robust_acc": "robust", "harmonic": "harmonic"}
PRUNERS = ("auto", "none", "median", "halving", "hyperband")
SAMPLERS = ("tpe", "random", "nsga2")
ATTR = "uegr"


INTERRUPTED = threading.Event()  # set by a worker's SIGINT/SIGTERM handler: stop the worker, not just the trial


def interrupt(signum=None, frame=None):
    """Signal handler for workers: the running trial ends failed (retriable), its run stopped, the worker exits."""
    INTERRUPTED.set()
    raise KeyboardInterrupt


class SweepError(ValueError):
    """A sweep cannot start as asked; the message says why and what to change."""


# ------------------------------------------------------------------------------------------ spec
@dataclass
class StudySpec:
    """What defines a study; stored in the storage so joining workers need only --study/--storage."""

    base_config: dict
    base_args: dict  # {"preset": str|None, "config": str|None, "set": [...]} for the reproduce command
    space: dict
    objectives: list[str]
    trials: int
    budget_steps: int = 0  # > 0: every trial stops at this many steps (promote runs at full budget)
    sampler: str = "tpe"
    pruner: str = "auto"
    seed: int | None = None
    forced: dict = field(default_factory=dict)  # settings the sweep adds to every trial (select_on, ...)
    enqueue_base: bool = False  # trial 0 of a new study = the base config's own values of the space's fields

    def trial_config(self, params: dict, with_budget: bool = True) -> C.Config:
        cfg = C.Config.from_dict(self.base_config)
        for k, v in {**self.forced, **params}.items():
            C.set_field(cfg, k, v)
        if with_budget and self.budget_steps:
            cfg.optim.max_steps = self.budget_steps
        return C.validate(cfg)

    def train_command(self, params: dict, extra: list[str] | None = None, with_budget: bool = True) -> str:
        args = ["uegr", "train"]
        if self.base_args.get("preset"):
            args += ["--preset", self.base_args["preset"]]
        if self.base_args.get("config"):
            args += ["--config", self.base_args["config"]]
        sets = list(self.base_args.get("set") or [])
        sets += [f"{k}={_fmt(v)}" for k, v in self.forced.items()]
        if with_budget and self.budget_steps:
            sets.append(f"optim.max_steps={self.budget_steps}")
        sets += [f"{k}={_fmt(v)}" for k, v in params.items()]
        sets += list(extra or [])
        for s in sets:
            args += ["--set", s]
        return " ".join(shlex.quote(a) for a in args)


def _fmt(v: Any) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def check_objectives(names: list[str]) -> list[str]:
    if not names:
        raise SweepError("--objective: give at least one of " + ", ".join(OBJECTIVES))
    for n in names:
        if n not in OBJECTIVES:
            raise SweepError(f"--objective {n!r} is not known; use one or more of {', '.join(OBJECTIVES)} "
                             "(comma-separated)")
    if len(set(names)) != len(names):
        raise SweepError(f"--objective lists {', '.join(names)}: each objective once")
    return names


def make_spec(base: C.Config, base_args: dict, space: dict, objectives: list[str], trials: int,
              budget_steps: int = 0, sampler: str = "tpe", pruner: str = "auto", seed: int | None = None,
              enqueue_base: bool = False) -> StudySpec:
    check_objectives(objectives)
    if trials < 1:
        raise SweepError(f"--trials {trials}: at least 1")
    if sampler not in SAMPLERS:
        raise SweepError(f"--sampler {sampler!r}: use one of {', '.join(SAMPLERS)}")
    pruner_name, _ = parse_pruner(pruner)
    if len(objectives) > 1 and pruner_name not in ("auto", "none"):
        raise SweepError(f"--pruner {pruner}: Optuna cannot prune a multi-objective study; use --pruner none "
                         "or a single --objective")
    if budget_steps < 0:
        raise SweepError(f"--budget-steps {budget_steps}: 0 (the config's own budget) or more")
    forced: dict[str, Any] = {}
    accuracy = [o for o in objectives if o in SELECT_FOR]
    select_on = SELECT_FOR[accuracy[0]] if accuracy else "clean"
    if select_on != base.runtime.select_on:
        forced["runtime.select_on"] = select_on
    needs_robust = any(o in ("robust_acc", "harmonic") for o in objectives)
    if needs_robust and not base.runtime.robust_eval_every:
        if not base.runtime.eval_every:
            raise SweepError("objective robust_acc/harmonic needs robust evaluations: set "
                             "runtime.robust_eval_every (steps) with --set")
        forced["runtime.robust_eval_every"] = base.runtime.eval_every
    spec = StudySpec(base.to_dict(), base_args, space, objectives, trials, budget_steps, sampler, pruner, seed,
                     forced, enqueue_base)
    overlap = set(space) & set(forced)
    if overlap:
        raise SpaceError(f"search space: {', '.join(sorted(overlap))} is set by the sweep for its objectives; "
                         "remove it from the space")
    spec.trial_config({})  # the base itself must be a valid trial
    _pruner(spec)  # bad pruner options are refused before a study exists
    if enqueue_base:
        base_params(spec)  # refused now, before a study exists, if the base lies outside the space
    return spec


def base_params(spec: StudySpec) -> dict[str, Any]:
    """The base config's own value of each field of the space (the first trial with --enqueue-base)."""
    cfg = spec.trial_config({})
    params = {}
    for name, dist in spec.space.items():
        section, key = name.split(".", 1)
        part = getattr(cfg, section)
        resolved = getattr(part, f"resolved_{key}", None)  # e.g. adv_eps 0 = "the norm's default" = 0.1
        value = resolved() if callable(resolved) else getattr(part, key)
        inside = value in dist["choices"] if "choices" in dist else dist["low"] <= value <= dist["high"]
        if not inside:
            allowed = dist["choices"] if "choices" in dist else f"[{dist['low']}, {dist['high']}]"
            raise SpaceError(f"--enqueue-base: the base config's {name}={value!r} is outside the space's "
                             f"{allowed}; widen the space, change the base with --set {name}=..., or drop "
                             "--enqueue-base")
        params[name] = value
    return params


# ------------------------------------------------------------------------------------------ storage
def resolve_storage(storage: str | None, store: RunStore) -> str:
    """None -> SQLite file in the runs folder; a *.db/*.sqlite path -> SQLite; a *.log/*.journal path ->
    Optuna journal file; anything with :// -> an SQLAlchemy URL (sqlite, postgresql, mysql, ...)."""
    if not storage:
        return f"sqlite:///{(store.sweep_dir() / 'optuna.db').resolve()}"
    if "://" in storage:
        return storage
    p = Path(storage).expanduser()
    if p.suffix in (".db", ".sqlite", ".sqlite3"):
        return f"sqlite:///{p.resolve()}"
    if p.suffix in (".log", ".journal", ".jsonl"):
        return f"journal:{p.resolve()}"
    raise SweepError(f"--storage {storage!r}: give an SQLAlchemy URL (sqlite:///file.db, postgresql://...), "
                     "a .db file or a .log/.journal journal file")


def open_storage(url: str, heartbeat: int = 30, retry_failed: int | None = None, store: RunStore | None = None):
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url[len("journal:"):]))
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}

    def connect():
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=heartbeat,
                                          grace_period=max(2 * heartbeat, heartbeat + 5),
                                          heartbeat_stale_trial_callback=FailedTrialHandler(retry_failed, store))

    try:
        if url.startswith("sqlite:///"):
            # Two processes creating one new SQLite file at once race on Optuna's schema tables (IntegrityError on
            # alembic_version: seen when the Sweep page read a study its worker was creating). Same host: a lock.
            from filelock import FileLock

            db = Path(url[len("sqlite:///"):])
            db.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(db) + ".lock", timeout=120):
                return connect()
        return connect()
    except Exception as exc:  # noqa: BLE001 - driver missing, bad URL, unreachable server
        raise SweepError(f"--storage {url}: cannot open it ({type(exc).__name__}: {str(exc)[:160]})") from None


class FailedTrialHandler:
    """Called for a trial whose worker died: marks its run failed and, with --retry-failed, re-enqueues it."""

    def __init__(self, max_retry: int | None, store: RunStore | None):
        self.max_retry = max_retry
        self.store = store

    def __call__(self, study, trial) -> None:
        run_name = trial.user_attrs.get("run")
        if self.store is not None and run_name:
            try:
                run = self.store.get(run_name)
                if run.raw_status().get("state") in ("running", "queued"):
                    run.set_status(state="failed", ended=time.time(), error=(
                        f"the sweep worker (pid {trial.user_attrs.get('pid')}) died during trial {trial.number} "
                        f"of study {study.study_name!r}; the trial is marked failed"))
            except RunError:
                pass
        if self.max_retry is not None:
            from optuna.storages import RetryHeartbeatStaleTrialCallback

            RetryHeartbeatStaleTrialCallback(max_retry=self.max_retry)(study, trial)


def fail_dead_trials(study, handler: FailedTrialHandler) -> list[int]:
    """Fail RUNNING trials whose worker process on THIS host is gone (works on every storage, at once)."""
    from optuna.trial import TrialState

    failed = []
    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        # "claimed" == number: pid/host were written for THIS trial (a retried trial inherits the dead one's)
        mine = t.user_attrs.get("claimed") == t.number
        if mine and t.user_attrs.get("host") == host and pid and pid != os.getpid() and not pid_alive(pid):
            try:
                if study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    failed.append(t.number)
                    handler(study, study._storage.get_trial(t._trial_id))
            except RuntimeError:
                continue  # another worker failed it first
    return failed


def _worker_seed(seed: int | None, worker_index: int, existing) -> int | None:
    """Workers sharing a study must not share a sampler seed (they would propose the same parameters):
    worker i of --workers gets seed + i; a worker joining a study that has trials also adds their count."""
    if seed is None:
        return None
    return seed + worker_index + (1000 * len(existing.trials) if existing is not None else 0)


def _sampler(name: str, seed: int | None, n_objectives: int):
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner_class(name: str):
    import optuna

    return {"median": optuna.pruners.MedianPruner, "halving": optuna.pruners.SuccessiveHalvingPruner,
            "hyperband": optuna.pruners.HyperbandPruner}.get(name)


def parse_pruner(text: str) -> tuple[str, dict[str, Any]]:
    """'halving:bootstrap_count=1,reduction_factor=4' -> ('halving', {...}); options are the Optuna pruner's
    own keyword arguments, checked against its signature."""
    import inspect

    import yaml

    name, _, rest = str(text).partition(":")
    name = name.strip()
    if name not in PRUNERS:
        raise SweepError(f"--pruner {text!r}: use one of {', '.join(PRUNERS)}, optionally with options, "
                         "e.g. halving:bootstrap_count=1")
    options: dict[str, Any] = {}
    if not rest.strip():
        return name, options
    cls = _pruner_class(name)
    if cls is None:
        raise SweepError(f"--pruner {text!r}: {name} takes no options")
    allowed = [p for p in inspect.signature(cls).parameters if p != "self"]
    for item in rest.split(","):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or key not in allowed:
            raise SweepError(f"--pruner {text!r}: {key or item!r} is not an option of {cls.__name__}; use "
                             f"{', '.join(allowed)} as OPTION=VALUE")
        try:
            options[key] = yaml.safe_load(raw.strip())
        except yaml.YAMLError:
            raise SweepError(f"--pruner {text!r}: {key}={raw!r} is not a number, true/false or a word") from None
    return name, options


def _pruner(spec: StudySpec):
    """The study's pruner: min_resource is the first evaluation of the first objective (so rung 0 is an
    evaluation), reduction factor 3, Optuna's other defaults; options given with --pruner override these."""
    import optuna

    name, options = parse_pruner(spec.pruner)
    if name == "auto":
        name = "median" if len(spec.objectives) == 1 and spec.objectives[0] != "train_seconds" else "none"
    cfg = spec.trial_config({})
    first = cfg.runtime.robust_eval_every if spec.objectives[0] in ("robust_acc", "harmonic") else cfg.runtime.eval_every
    defaults: dict[str, Any] = {
        "median": {"n_startup_trials": 3, "n_warmup_steps": 0},
        "halving": {"min_resource": first or "auto", "reduction_factor": 3},
        "hyperband": {"min_resource": first or 1, "max_resource": cfg.optim.max_steps or "auto", "reduction_factor": 3},
    }.get(name)
    if defaults is None:
        return optuna.pruners.NopPruner()
    try:
        return _pruner_class(name)(**{**defaults, **options})
    except (TypeError, ValueError) as exc:
        raise SweepError(f"--pruner {spec.pruner!r}: {exc}") from None


def _quiet_optuna() -> None:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats and retried_trial_number are "experimental" since Optuna 2.8; the pin keeps them stable here
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def create_or_load(study_name: str, url: str, spec: StudySpec | None, store: RunStore, heartbeat: int = 30,
                   retry_failed: int | None = None, pruner=None, worker_index: int = 0):
    """(study, spec). spec None = join an existing study with its stored spec."""
    import optuna

    _quiet_optuna()
    if not NAME_RE.match(study_name):
        raise SweepError(f"--study {study_name!r}: use letters, digits, '-', '_' or '.' (at most 100 characters)")
    storage = open_storage(url, heartbeat, retry_failed, store)
    try:
        existing = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        existing = None
    if existing is not None:
        stored = StudySpec(**existing.user_attrs[ATTR]) if ATTR in existing.user_attrs else None
        if stored is None:
            raise SweepError(f"study {study_name!r} in {url} was not made by uegr sweep; choose another --study")
        if spec is not None and _comparable(spec) != _comparable(stored):
            raise SweepError(f"study {study_name!r} already exists with another base config, space or objectives; "
                             "join it with only --study/--storage, or choose another --study")
        if spec is not None and spec.trials != stored.trials:
            stored.trials = spec.trials  # growing (or shrinking) the budget of a study is allowed
            existing.set_user_attr(ATTR, asdict(stored))
        spec = stored
    elif spec is None:
        raise SweepError(f"no study {study_name!r} in {url}: give --preset/--config/--set (and --space) to create it")
    study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True,
                                directions=[OBJECTIVES[o] for o in spec.objectives],
                                sampler=_sampler(spec.sampler, _worker_seed(spec.seed, worker_index, existing),
                                                 len(spec.objectives)),
                                pruner=pruner if pruner is not None else _pruner(spec))
    if ATTR not in study.user_attrs:
        study.set_user_attr(ATTR, asdict(spec))
        if existing is None and spec.enqueue_base:
            study.enqueue_trial(base_params(spec), user_attrs={"base": True})
    return study, spec


def _comparable(spec: StudySpec) -> tuple:
    return (json.dumps(spec.base_config, sort_keys=True), json.dumps(spec.space, sort_keys=True),
            tuple(spec.objectives), spec.budget_steps)


# ------------------------------------------------------------------------------------------ one trial
class TrialReporter(Callback):
    """Trainer callback: reports each evaluation of the study's first objective to the trial and asks the
    pruner; a pruned trial stops training at once (checkpoint 'last' is kept)."""

    def __init__(self, trial, spec: StudySpec):
        self.trial = trial
        self.spec = spec
        self.objective = spec.objectives[0] if len(spec.objectives) == 1 else None
        self.pruned_at: int | None = None
        self._clean: dict[int, float] = {}

    def _report(self, value: float | None, step: int) -> None:
        if value is None or self.pruned_at is not None:
            return
        self.trial.report(float(value), step)
        if self.trial.should_prune():
            self.pruned_at = step

    def on_evaluate(self, state, control, metrics: dict) -> None:
        if metrics.get("split") == "validation":
            self._clean[metrics["step"]] = metrics["accuracy"]
        if self.objective == "clean_acc":
            self._report(metrics.get("accuracy"), metrics["step"])
        control.should_stop |= self.pruned_at is not None

    def on_robust_eval(self, state, control, rec: dict) -> None:
        from ..robust_eval import selection_score

        if self.objective in ("robust_acc", "harmonic"):  # the same chance floor as the trial's final value
            clean = self._clean.get(rec["step"], rec["clean_acc"])
            self._report(selection_score(SELECT_FOR[self.objective], clean, rec["robust_acc"], rec.get("chance")),
                         rec["step"])
        control.should_stop |= self.pruned_at is not None


def trial_values(run: Run, spec: StudySpec) -> dict[str, Any]:
    """clean_acc, robust_acc, harmonic (None when not measured) at the checkpoint the run selected
    (runtime.select_on), its step, and train_seconds."""
    from ..robust_eval import robust_rows, selection_score

    cfg = run.config()
    select_on = cfg.runtime.select_on
    evals = [e for e in run.metrics("eval") if e.get("split", "validation") == "validation"]
    rows = robust_rows(evals, run.metrics("robust"))
    if select_on == "clean":
        if not evals:
            raise SweepError(f"run {run.name} logged no validation evaluation")
        e = max(evals, key=lambda e: e["accuracy"])  # first maximum, as the trainer's checkpoints/best
        best = next((r for r in rows if r["step"] == e["step"]),
                    {"step": e["step"], "clean_acc": e["accuracy"], "robust_acc": None, "harmonic": None})
    else:
        rows = [r for r in rows if selection_score(select_on, r["clean_acc"], r["robust_acc"], r["chance"]) is not None]
        if not rows:
            raise SweepError(f"run {run.name} logged no robust evaluation; set runtime.robust_eval_every below "
                             "the trial's number of steps")
        best = max(rows, key=lambda r: selection_score(select_on, r["clean_acc"], r["robust_acc"], r["chance"]))
    st = run.status()
    seconds = float((st.get("ended") or time.time()) - (st.get("started") or time.time()))
    return {"clean_acc": best["clean_acc"], "robust_acc": best["robust_acc"], "harmonic": best["harmonic"],
            "train_seconds": seconds, "step": best["step"], "chance": best.get("chance")}


def objective_value(objective: str, values: dict) -> float | None:
    """A trial's value for one objective: robust accuracy counts only for a model that learned something
    (see uegr.robust_eval.CHANCE_MARGIN); the measured robust_acc stays in the trial's attributes."""
    from ..robust_eval import selection_score

    if objective == "robust_acc":
        return selection_score("robust", values["clean_acc"], values["robust_acc"], values.get("chance"))
    return values[objective]


def train_trial(study_name: str, spec: StudySpec, store: RunStore, params: dict, trial=None, name: str = "",
                extra: list[str] | None = None, with_budget: bool = True, tags: dict | None = None,
                quiet: bool = True) -> tuple[Run, dict]:
    """Train one configuration as an ordinary run; (run, objective values). Raises optuna.TrialPruned
    when the trial's pruner stops it."""
    from ..cli import ProgressPrinter
    from ..trainer import RunRecorder, Trainer

    cfg = spec.trial_config(params, with_budget)
    C.apply_overrides(cfg, extra or [])
    C.validate(cfg)
    run = store.create(cfg, name)
    sweep_tag = {"study": study_name, **(tags or {})}
    run.set_status(sweep=sweep_tag)
    if trial is not None:
        trial.set_user_attr("run", run.name)
    reporter = TrialReporter(trial, spec) if trial is not None else None
    callbacks = [RunRecorder(run), ProgressPrinter(quiet)] + ([reporter] if reporter else [])
    try:
        trainer = Trainer(cfg, run=run, callbacks=callbacks)
    except Exception as exc:
        run.set_status(state="failed", error=f"{type(exc).__name__}: {exc}", ended=time.time())
        raise
    result = trainer.fit()
    del trainer
    gc.collect()
    if reporter is not None and reporter.pruned_at is not None:
        import optuna

        msg = (f"pruned by study {study_name!r} (trial {trial.number}) after its evaluation at step "
               f"{reporter.pruned_at}")
        run.set_status(pruned=True, sweep={**sweep_tag, "pruned": True, "pruned_at": reporter.pruned_at},
                       note=msg)
        raise optuna.TrialPruned(msg)
    if result["state"] == "stopped" and (INTERRUPTED.is_set() or jobs.stop_requested()):
        raise KeyboardInterrupt  # the trainer turned Ctrl-C/SIGTERM into a clean stop; the worker must end too
    if result["state"] != "completed":
        raise RuntimeError(f"run {run.name} ended {result['state']}")
    values = trial_values(run, spec)
    missing = [o for o in spec.objectives if values[o] is None]
    if missing:
        raise SweepError(f"run {run.name}: objective {', '.join(missing)} was not measured")
    run.set_status(sweep={**sweep_tag, "values": {o: values[o] for o in spec.objectives},
                          "selected_step": values["step"]})
    return run, values


# ------------------------------------------------------------------------------------------ a worker
def finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def run_worker(study, spec: StudySpec, store: RunStore, url: str, progress_file: Path | None = None,
               retry_failed: int | None = None, quiet: bool = True) -> int:
    """Run trials until the study holds spec.trials finished trials; returns how many this worker ran."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    handler = FailedTrialHandler(retry_failed, store)
    fail_dead_trials(study, handler)
    ran = [0]
    progress = Progress(study, spec, url, progress_file)

    def objective(trial):
        # Claim the trial first: a retried trial inherits the dead worker's pid/host, and would otherwise be
        # failed by the scan below as if it were still the dead worker's.
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("host", socket.gethostname())
        fail_dead_trials(study, handler)  # a worker that died on this host since the last trial
        params = suggest(trial, spec.space)
        progress.write(f"trial {trial.number} running")
        trial.set_user_attr("claimed", trial.number)  # from now on a dead pid here means this worker died
        name = f"{study.study_name}-t{trial.number:04d}"
        if (store.root / name).exists():
            name = f"{name}-{int(time.time())}"
        retried = RetryHeartbeatStaleTrialCallback.retried_trial_number(study._storage.get_trial(trial._trial_id))
        tags = {"trial": trial.number, **({"retry_of": retried} if retried is not None else {})}
        run, values = train_trial(study.study_name, spec, store, params, trial, name, tags=tags, quiet=quiet)
        for k, v in values.items():
            trial.set_user_attr(k, v)
        vals = [objective_value(o, values) for o in spec.objectives]
        return vals[0] if len(vals) == 1 else vals

    def after(study, trial):
        ran[0] += 1
        progress.write(f"trial {trial.number} {trial.state.name.lower()}")
        if jobs.stop_requested():  # the background job was asked to stop: no new trial
            study.stop()

    # One trial at a time, and only while finished + running trials are short of the budget: a worker whose
    # peers are running the last trials waits for them (taking over if one fails) instead of starting an
    # extra trial. Only two workers asking in the same instant can still overshoot, by one.
    attempts = max(0, spec.trials - finished(study))  # as many tries as trials missing: failures cannot loop
    while attempts > 0 and not jobs.stop_requested():
        fail_dead_trials(study, handler)
        _fail_stale_trials(study)
        done = finished(study)
        if done >= spec.trials:
            break
        if done + _running(study) >= spec.trials:
            time.sleep(WAIT_FOR_PEERS)
            continue
        before = ran[0]
        attempts -= 1
        study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[after])
        if ran[0] == before:  # the trial did not finish (the study was stopped)
            break
    progress.write("done" if finished(study) >= spec.trials else "stopped")
    return ran[0]


WAIT_FOR_PEERS = 2.0  # seconds between looks at peers' running trials


def _running(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _fail_stale_trials(study) -> None:
    """RDB storages: fail trials whose heartbeat went stale (a worker on another host died), as
    study.optimize does when it starts."""
    from optuna.storages import fail_stale_trials

    try:
        fail_stale_trials(study)
    except Exception:  # noqa: BLE001 - storages without heartbeats
        pass


class Progress:
    """progress.json of a study: trials done/total, best so far, ETA; atomically replaced by each worker."""

    def __init__(self, study, spec: StudySpec, url: str, path: Path | None):
        self.study, self.spec, self.url, self.path = study, spec, url, path
        self.started = time.time()

    def snapshot(self, message: str = "") -> dict:
        return study_summary(self.study, self.spec, self.url, message)

    def write(self, message: str) -> None:
        if self.path is None:
            return
        data = self.snapshot(message)
        jobs.report(data["trials_done"], data["trials_total"], message, eta_s=data["eta_s"], every=0)
        data["worker_pid"] = os.getpid()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path, json.dumps(data, indent=1, default=str))


def study_summary(study, spec: StudySpec, url: str, message: str = "") -> dict:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = {s: sum(1 for t in trials if t.state == s) for s in TrialState}
    done = count[TrialState.COMPLETE] + count[TrialState.PRUNED]
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                 if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_complete and t.datetime_start]
    running = count[TrialState.RUNNING]
    left = max(0, spec.trials - done)
    eta = sum(durations) / len(durations) * left / max(1, running) if durations and left else (0.0 if not left else None)
    return {"study": study.study_name, "storage": url, "objectives": spec.objectives,
            "directions": [OBJECTIVES[o] for o in spec.objectives], "trials_total": spec.trials,
            "trials_done": done, "complete": count[TrialState.COMPLETE], "pruned": count[TrialState.PRUNED],
            "failed": count[TrialState.FAIL], "running": running, "eta_s": eta,
            "best": best_trials(study, spec), "best_pruned": best_pruned(study, spec.objectives[0]), "message": message,
            "updated": time.time()}


def best_pruned(study, objective: str) -> dict | None:
    """When no trial ran to the end (an aggressive pruner can stop every one): the pruned trial with the best
    last reported value, to --promote. None while some trial is complete."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.COMPLETE for t in trials):
        return None
    sign = 1 if OBJECTIVES[objective] == "maximize" else -1
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if not pruned:
        return None
    t = max(pruned, key=lambda t: (sign * t.intermediate_values[max(t.intermediate_values)], max(t.intermediate_values)))
    step = max(t.intermediate_values)
    return {"trial": t.number, "step": step, "value": t.intermediate_values[step], "params": t.params,
            "run": t.user_attrs.get("run")}


def best_trials(study, spec: StudySpec) -> list[dict]:
    from optuna.trial import TrialState

    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return []
    best = study.best_trials if len(spec.objectives) > 1 else [study.best_trial]
    return [{"trial": t.number, "values": dict(zip(spec.objectives, t.values)), "params": t.params,
             "run": t.user_attrs.get("run"), "selected_step": t.user_attrs.get("step"),
             "metrics": {k: t.user_attrs.get(k) for k in ("clean_acc", "robust_acc", "harmonic") if k in t.user_attrs},
             "command": spec.train_command(t.params)} for t in sorted(best, key=lambda t: t.number)]
