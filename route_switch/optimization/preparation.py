"""Everything an optimisation run reads before the search: tiers in cost order, λ and its cost unit,
the train/validation/gate/test slices, the cached LMs, the extra instruction candidates and the
progress bar."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from route_switch.core.evalset import Evalset
from route_switch.llm.program import RoutingProgram
from route_switch.optimization.settings import OptimizeSettings


@dataclass
class Prepared:
    """One run's inputs, read by the strategy, the gate and the report.

    ``fit``/``val``/``gate``/``test``: the slices (see :func:`splits`); ``extra``: instruction
    candidates ``(text, origin)`` added to the search; ``record``: every candidate considered, for
    metrics.json; ``clip``: the query as the router reads it.
    """

    settings: OptimizeSettings
    start: RoutingProgram
    train: Evalset
    fit: Evalset
    val: Evalset
    gate: Evalset
    test: Evalset
    lam: float
    lam_source: str
    unit: float
    lm_cfg: dict
    proposer_cfg: dict
    task_lm: object
    prompt_lm: object
    caches: tuple
    reader: object
    extra: list = field(default_factory=list)
    mined: list = field(default_factory=list)
    record: list = field(default_factory=list)
    bar: object = None

    @property
    def clip(self):
        return self.reader.clip  # the optimiser sees queries exactly as the router reads them


def splits(train: Evalset, test: Evalset, n_train: int | None, n_val: int, n_gate: int, n_test: int, seed: int):
    """Disjoint slices of the train split — MIPROv2's validation, the gate, and the rest (at most
    ``n_train``) for demos and mined policies — and a sample of the test split."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(train))
    n_val = min(n_val, len(train) // 2)
    n_gate = min(n_gate, (len(train) - n_val) // 2)  # a small split keeps half of the rest for demos
    val, gate, rest = idx[:n_val], idx[n_val:n_val + n_gate], idx[n_val + n_gate:]
    rest = rest[:n_train] if n_train else rest
    return (*(train.subset(np.sort(p)) for p in (rest, val, gate)),
            test.subset(np.sort(rng.permutation(len(test))[:n_test])))


def prepare(train: Evalset, test: Evalset, start: RoutingProgram, s: OptimizeSettings) -> Prepared:
    """The run's inputs (tiers are the evalset's models in cost order); no routing call is made yet."""
    from route_switch.core.paths import cache_dir as default_cache
    from route_switch.core.selection import break_even_lambda, cost_normaliser
    from route_switch.llm.cache import cached_lm
    from route_switch.llm.router_llm import RouterLLM

    order = np.argsort(train.costs.mean(axis=0), kind="stable")
    train, test = (ev._replace(models=[ev.models[j] for j in order], scores=ev.scores[:, order],
                               costs=ev.costs[:, order]) for ev in (train, test))
    unit = cost_normaliser(train.costs.mean(axis=0))
    lam_source = "given" if s.lam is not None else "break-even"
    lam = float(s.lam) if s.lam is not None else round(break_even_lambda(train.scores, train.costs), 4)

    lm_cfg = dict(s.lm_cfg or {"kind": "local"})
    if not s.progress:
        logging.getLogger("dspy").setLevel(logging.WARNING)  # MIPROv2 logs every trial at INFO
    fit_ev, val_ev, gate_ev, test_ev = splits(train, test, s.n_train, s.n_val, s.n_gate, s.n_test, s.seed)

    cdir = Path(s.cache_dir) if s.cache_dir else default_cache() / "lm"
    task_lm, task_cache = cached_lm(lm_cfg, start.labels, cdir)
    proposer_cfg = dict(s.prompt_lm_cfg or lm_cfg)
    prompt_lm, prompt_cache = cached_lm(proposer_cfg, start.labels, cdir,
                                        max_tokens=int(proposer_cfg.get("proposal_max_tokens", 300)))
    run = Prepared(s, start, train, fit_ev, val_ev, gate_ev, test_ev, lam, lam_source, unit, lm_cfg, proposer_cfg,
                   task_lm, prompt_lm, (task_cache, prompt_cache), RouterLLM(start, lm=task_lm))
    run.extra, run.mined = instruction_candidates(run)
    run.bar = progress_bar(run)
    return run


def instruction_candidates(run: Prepared) -> tuple[list, list]:
    """(extra instruction candidates ``(text, origin)``, the mined policies they come from)."""
    from route_switch.optimization.grounding import grounded_instruction
    from route_switch.optimization.mining import mine_policies, policy_candidates

    s, train, fit_ev, start = run.settings, run.train, run.fit, run.start
    extra, mined = [], []
    if s.grounded:
        extra.append((grounded_instruction(train.prompts, train.scores, train.costs, start.tiers), "data-grounded"))
    if s.mine:
        mined = mine_policies(fit_ev.prompts, fit_ev.scores, fit_ev.costs, lam=run.lam, unit=run.unit, seed=s.seed,
                              tasks=fit_ev.queries["task"].tolist() if "task" in fit_ev.queries else None)
        extra += policy_candidates(start.instruction, mined)
    return extra, mined


def progress_bar(run: Prepared):
    """A bar over the routing calls (cached or not): MIPROv2's minibatches and full evaluations, then
    validation (fusion weights), the gate and the test sample for the start and the kept program."""
    from tqdm import tqdm

    s = run.settings
    mini = min(35, len(run.val))
    total = s.num_trials * mini + (s.num_trials // 5 + 4) * len(run.val) + 2 * (len(run.gate) + len(run.test))
    return tqdm(total=total, desc=f"optimize {s.name}", disable=not s.progress, unit="eval", miniters=1)
