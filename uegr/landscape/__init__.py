"""Loss-landscape flatness probes, split by job:

- `probes`: the math (fixed batches, threaded loss, filter-normalised directions, slices, interpolation,
  Hessian-vector products, top eigenvalues, Hutchinson trace, SAM and ε-sharpness);
- `run`: one probe as a JSON record (`probe_run`), its settings, their bounds and the cost model;
- `cli`: the `uegr landscape` command.

Everything public is re-exported here, so `from uegr.landscape import probe_run` keeps working.
"""

from .cli import add_landscape_parser, cmd_landscape
from .probes import (
    KINDS,
    Batch,
    HessianOperator,
    LandscapeError,
    LossFn,
    ParamSpec,
    ProbeStopped,
    Progress,
    ShouldStop,
    _n_examples,
    check_compatible,
    default_loss,
    eps_sharpness,
    fixed_batches,
    hessian_trace,
    hvp,
    interpolate,
    loss_on_batches,
    random_direction,
    sam_sharpness,
    select_params,
    slice_1d,
    slice_2d,
    top_eigenvalues,
)
from .run import (
    BOUNDS,
    FORWARD_RATE,
    GRAD_COST,
    HVP_COST,
    MAX_POINTS_2D,
    ProbeSettings,
    check_settings,
    estimate_cost,
    probe_run,
)

__all__ = [
    "BOUNDS", "FORWARD_RATE", "GRAD_COST", "HVP_COST", "KINDS", "MAX_POINTS_2D", "Batch", "HessianOperator",
    "LandscapeError", "LossFn", "ParamSpec", "ProbeSettings", "ProbeStopped", "Progress", "ShouldStop",
    "_n_examples", "add_landscape_parser", "check_compatible", "check_settings", "cmd_landscape", "default_loss",
    "eps_sharpness", "estimate_cost", "fixed_batches", "hessian_trace", "hvp", "interpolate", "loss_on_batches",
    "probe_run", "random_direction", "sam_sharpness", "select_params", "slice_1d", "slice_2d", "top_eigenvalues",
]
