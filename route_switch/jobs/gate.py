"""Current vs candidate on the held-out slice: per-query tier choices, objectives, misroute changes, the gate."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from route_switch.core.tiers import to_index

log = logging.getLogger("route_switch")


def objectives(choice, ev, lam) -> dict:
    """Held-out figures of per-query tier choices (0-based; None = no valid tier), λ in the one unit."""
    from route_switch.optimization.objective import outcomes
    from route_switch.core.selection import cost_normaliser

    eye = np.eye(len(ev.models))
    votes = [None if k is None else eye[k] for k in choice]
    return outcomes(votes, ev, lam, cost_normaliser(ev.costs.mean(axis=0)))


def program_choices(program, lm_cfg: dict, ev, cache_dir: Path) -> list:
    """Per-query tier index (0-based; None = no valid tier) of a routing program on ``ev``."""
    from route_switch.llm.cache import cached_lm
    from route_switch.optimization.objective import program_votes
    from route_switch.llm.router_llm import RouterLLM

    lm, _ = cached_lm(lm_cfg, program.labels, cache_dir)
    router = RouterLLM(program, lm=lm)
    votes = program_votes(router.module, [router.clip(q) for q in ev.prompts])
    return [None if v is None else int(np.argmax(v)) for v in votes]


def estimator_predictions(est, ev) -> np.ndarray:
    """A loaded estimator's predicted quality for ``ev``'s queries, columns in ``ev.models`` order."""
    return est.predict(ev.prompts)[:, [est.models_.index(m) for m in ev.models]]


def curve_per_query(pred: np.ndarray, ev, lam) -> np.ndarray:
    """Each query's objective averaged over the τ sweep (every operating point, as AIQ integrates
    them), with the same selection rule and cost order for any predictions compared."""
    from route_switch.core.selection import TAU_GRID, cost_normaliser, select_tau

    unit = ev.costs.mean(axis=0)
    norm = cost_normaliser(unit)
    rows = np.arange(len(ev))
    total = np.zeros(len(ev))
    for tau in TAU_GRID:
        k = select_tau(pred, unit, tau)
        total += ev.scores[rows, k] - lam * ev.costs[rows, k] / norm
    return total / len(TAU_GRID)


def estimator_choices(est_dir: Path, ev, tiers) -> list | None:
    """Per-query tier index of the router fitted in ``est_dir`` (its router.yaml τ/λ); None if unusable."""
    from route_switch.routing.controller import Router

    if not (Path(est_dir) / "router.yaml").exists():
        return None
    try:
        r = Router.from_config(est_dir)
        r = type(r)(tiers=tiers, estimator=r.estimator, tau=r.tau, lam=r.lam, cache_size=0)
    except Exception as e:
        log.warning("current estimator %s cannot route these tiers: %s", est_dir, e)
        return None
    return [to_index(d.tier) for d in r.route_batch(ev.prompts)]


def misroute_changes(ev, cur, cand, limit: int = 20) -> dict:
    from route_switch.core.evaluate import misroutes

    unit = ev.costs.mean(axis=0)
    top = len(ev.models) - 1
    fix = lambda ch: np.array([top if k is None else k for k in ch])  # noqa: E731  (no tier: as if top were paid)
    a = {m["id"]: m for m in misroutes(ev, fix(cur), unit, 10_000)} if cur is not None else {}
    b = {m["id"]: m for m in misroutes(ev, fix(cand), unit, 10_000)}
    return {"current": len(a) if cur is not None else None, "candidate": len(b),
            "fixed": [a[i] for i in a if i not in b][:limit], "new": [b[i] for i in b if i not in a][:limit]}


def per_query(choice, ev, lam) -> np.ndarray:
    """Objective of each held-out query under per-query tier choices (None: as if no valid tier)."""
    from route_switch.optimization.objective import objective
    from route_switch.core.selection import cost_normaliser

    unit = cost_normaliser(ev.costs.mean(axis=0))
    return np.array([objective(k, ev.scores[i], ev.costs[i], lam, unit) for i, k in enumerate(choice)])


def gate(cur_choice, cand_choice, ev, lam, **kw) -> tuple[bool, dict, str]:
    """Promote only a real gain at the deployed operating points: :func:`gain_gate` on each query's
    objective under the two versions' tier choices; without a usable current version the candidate passes."""
    if cur_choice is None:
        return True, {}, "no deployed version yet: the candidate is promoted"
    return gain_gate(per_query(cur_choice, ev, lam), per_query(cand_choice, ev, lam), **kw)


def gain_gate(current: np.ndarray, candidate: np.ndarray, *, min_gain: float = 0.0, confidence: float = 0.9,
              seed: int = 0) -> tuple[bool, dict, str]:
    """The paired-bootstrap lower bound of candidate − current (per-query values) must exceed
    ``min_gain`` (:func:`~route_switch.optimization.significance.paired_gain`). Returns
    ``(passed, gain, one line saying why)``."""
    from route_switch.optimization.significance import describe_gain, paired_gain

    g = paired_gain(candidate, current, confidence=confidence, seed=seed)
    ok = g["lower"] > min_gain
    why = describe_gain(g) + (f" > {min_gain:+.4f}: promote" if ok else
                              f" does not show a gain above {min_gain:+.4f}: keep the current version")
    return ok, g, why
