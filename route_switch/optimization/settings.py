"""What one optimisation run is asked to do: the settings of :func:`~route_switch.optimization.optimize.optimize`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from route_switch.core.errors import ConfigError

OPTIMIZERS = ("mipro", "gepa")


@dataclass
class OptimizeSettings:
    """The keywords of ``optimize()``.

    ``lam``: the cost weight (None: break-even λ of the train split). Disjoint slices of the train
    split: ``n_val`` (MIPROv2's validation), ``n_gate`` (the gate: the winner is kept only when the
    one-sided paired-bootstrap lower bound of its gain over the start exceeds ``min_gain`` at
    ``confidence``) and the rest, at most ``n_train`` (None: all), where demo candidates and mined
    policy lines come from; ``n_test`` queries of the test split give the held-out figures.
    ``data_demos``: demos drawn from the evalset (ids recorded); ``demo_pool``: demos people wrote
    instead. ``mine``: add instruction candidates made of mined policy lines; ``grounded``: add one
    written from the labelled train split. ``fused``: gate and report the program as ``route()``
    runs it, fused with an estimator fitted on the rest; the LLM-alone figures are recorded beside.
    ``prompt_lm_cfg``: a (usually stronger) LM that writes proposals; by default the router LM.
    ``optimizer``: ``mipro`` (instruction × demos) or ``gepa`` (``dspy.GEPA``, instruction only).
    ``name``/``out_root``: the artifact is written to ``out_root/name``; ``cache_dir``: the LM call
    cache (default: the user cache); ``start_origin``: what metrics.json calls the start instruction.
    """

    lam: float | None = None
    lm_cfg: dict | None = None
    name: str = "default"
    out_root: str | Path = "optimized"
    evalset_name: str = ""
    n_train: int | None = None
    n_val: int = 60
    n_gate: int = 120
    n_test: int = 150
    num_candidates: int = 4
    num_trials: int = 8
    seed: int = 0
    cache_dir: str | Path | None = None
    data_demos: bool = True
    demo_pool: list[dict] | None = None
    mine: bool = True
    fused: bool = True
    prompt_lm_cfg: dict | None = None
    start_origin: str = "start"
    confidence: float = 0.9
    min_gain: float = 0.0
    grounded: bool = True
    progress: bool = True
    optimizer: str = "mipro"

    def check(self, n_evalset_tiers: int, evalset_models, n_program_tiers: int):
        """ConfigError naming the field when the settings cannot run on this evalset and program."""
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; expected mipro or gepa", field="optimizer")
        if n_evalset_tiers != n_program_tiers:
            raise ConfigError(f"the evalset has {n_evalset_tiers} tiers ({evalset_models}) but the program has "
                              f"{n_program_tiers}", field="tiers")
        if self.optimizer == "gepa" and self.demo_pool:
            raise ConfigError("GEPA optimises the instruction only: drop the demo pool", field="optimizer")

    @property
    def chooses_demos(self) -> bool:
        """Whether the search picks demos (MIPROv2 with a demo pool or evalset demos) or keeps the program's."""
        return self.optimizer == "mipro" and (bool(self.demo_pool) or self.data_demos)
