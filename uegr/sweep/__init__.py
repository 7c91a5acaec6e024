"""Hyperparameter search on Optuna (`uegr sweep`): search spaces checked against the config schema, studies
with one or several objectives, pruning from intermediate evaluations, shared storages and workers.
Every trial is an ordinary run in the run store, tagged with its study and trial number."""

from .space import DEFAULT_SPACES, SpaceError, load_space, parse_space
from .study import OBJECTIVES, StudySpec, SweepError, create_or_load, make_spec, resolve_storage, run_worker

__all__ = ["DEFAULT_SPACES", "OBJECTIVES", "SpaceError", "StudySpec", "SweepError", "create_or_load", "load_space",
           "make_spec", "parse_space", "resolve_storage", "run_worker"]
