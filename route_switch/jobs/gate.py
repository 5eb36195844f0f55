"""Current vs candidate on the held-out slice: per-query tier choices, objectives, misroute changes, the gate."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..tiers import to_index

log = logging.getLogger("route_switch")


def objectives(choice, ev, lam) -> dict:
    """Held-out figures of per-query tier choices (0-based; None = no valid tier), λ in the one unit."""
    from ..optimize import outcomes
    from ..selection import cost_unit

    eye = np.eye(len(ev.models))
    votes = [None if k is None else eye[k] for k in choice]
    return outcomes(votes, ev, lam, cost_unit(ev.costs.mean(axis=0)))


def program_choices(program, lm_cfg: dict, ev, cache_dir: Path) -> list:
    """Per-query tier index (0-based; None = no valid tier) of a routing program on ``ev``."""
    from ..llm.cache import cached_lm
    from ..optimize import program_votes
    from ..program import RouterLLM

    lm, _ = cached_lm(lm_cfg, program.labels, cache_dir)
    router = RouterLLM(program, lm=lm)
    votes = program_votes(router.module, [router.clip(q) for q in ev.prompts])
    return [None if v is None else int(np.argmax(v)) for v in votes]


def estimator_choices(est_dir: Path, ev, tiers) -> list | None:
    """Per-query tier index of the router fitted in ``est_dir`` (its router.yaml τ/λ); None if unusable."""
    from ..controller import Router

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
    from ..evaluate import misroutes

    unit = ev.costs.mean(axis=0)
    top = len(ev.models) - 1
    fix = lambda ch: np.array([top if k is None else k for k in ch])  # noqa: E731  (no tier: as if top were paid)
    a = {m["id"]: m for m in misroutes(ev, fix(cur), unit, 10_000)} if cur is not None else {}
    b = {m["id"]: m for m in misroutes(ev, fix(cand), unit, 10_000)}
    return {"current": len(a) if cur is not None else None, "candidate": len(b),
            "fixed": [a[i] for i in a if i not in b][:limit], "new": [b[i] for i in b if i not in a][:limit]}


def gate(cur: dict | None, cand: dict, min_delta: float) -> tuple[bool, float | None, str]:
    if cur is None:
        return True, None, "no usable current version: the candidate is promoted"
    delta = cand["objective"] - cur["objective"]
    ok = delta >= min_delta
    return ok, delta, (f"objective delta {delta:+.4f} {'>=' if ok else '<'} gate {min_delta:+.4f}")

