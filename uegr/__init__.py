"""UEGR Studio library: bi-stage robust fine-tuning (UEGR) and its baselines, with analyses.

Reading order: config -> methods/uegr.py -> trainer.py -> runs.py.
"""

from . import env as _env

_env.configure()

__version__ = "0.1.0"
