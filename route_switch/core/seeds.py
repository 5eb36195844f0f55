"""Error bars for routing figures: several random splits (mean ± spread) and a bootstrap on one split.

Single-split figures swing by several points of cost ratio between split seeds, so a table
that compares routers should show the spread. ``evaluate_seeds`` runs the evaluation once per
split seed and summarises every headline metric as mean, standard deviation, min and max (and
how many splits reached the point, for cost ratios that may be unreachable). ``bootstrap_ci``
resamples the test queries of one split to give a percentile interval without refitting.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from route_switch.core.metrics import aiq, cost_ratio_at
from route_switch.core.selection import ANCHORED_GRID, TAU_GRID, select_anchored, select_tau

METRICS = ("aiq", "cost_ratio_at_95", "cost_ratio_at_100")


def describe(values: Iterable[float | None]) -> dict:
    """mean, std (sample), min, max over the values that exist; ``n`` of them and ``n_missing``."""
    values = list(values)
    vals = [float(v) for v in values if v is not None]
    missing = sum(v is None for v in values)
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0, "n_missing": missing}
    a = np.array(vals)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "min": float(a.min()), "max": float(a.max()), "n": len(a), "n_missing": missing}


def headline(res: dict) -> dict:
    """The per-split figures that get error bars, flattened to ``{name: value}``."""
    row: dict = {}
    for name, r in res["routers"].items():
        for m in METRICS:
            row[f"{name}.{m}"] = r.get(m)
        for sub in ("lambda", "anchored"):
            if sub in r:
                for m in METRICS:
                    row[f"{name} ({sub}).{m}"] = r[sub].get(m)
    if "operating_point" in res:
        op, best = res["operating_point"], res["best_single"]
        row["operating_point.cost_rel"] = op["cost"] / best["cost"] if best["cost"] else None
        row["operating_point.quality_rel"] = op["quality"] / best["quality"] if best["quality"] else None
    if "risk" in res:
        rk = res["risk"]
        row.update({"risk.quality_loss": rk["quality_loss"], "risk.cost_rel_best": rk["cost_rel_best"],
                    "risk.violated": float(rk["violated"]), "risk.violated_vs_anchor": float(rk["violated_vs_anchor"])})
    chosen = (res.get("estimator_cv") or {}).get("chosen") or {}
    for key, v in chosen.items():  # hyper-parameters chosen by cross-validation at fit, per split
        row[f"route-switch.cv.{key}"] = v
    row["oracle.aiq"] = res.get("oracle_aiq")
    return row


def evaluate_seeds(run: Callable[[int], dict], seeds: Iterable[int]) -> dict:
    """Run ``run(seed) -> evaluate() result`` for every seed; summarise the headline metrics.

    Returns ``{"seeds", "per_seed": [{seed, metric: value}], "summary": {metric: describe()}}``;
    with a risk block, ``summary["risk.violated"]["mean"]`` is the violation rate. When the runs
    bootstrap (``evaluate(bootstrap=N)``), ``"bootstrap"`` lists route-switch's intervals per split.
    """
    seeds = list(seeds)
    rows, boots = [], []
    first = None
    for s in seeds:
        res = run(s)
        first = first or res
        rows.append({"seed": s, **headline(res)})
        b = res["routers"].get("route-switch", {}).get("bootstrap")
        if b:
            boots.append({"seed": s, **b})
    keys = [k for k in rows[0] if k != "seed"] if rows else []
    out = {"evalset": first["evalset"] if first else None, "n_train": first and first["n_train"],
           "n_test": first and first["n_test"], "seeds": seeds, "per_seed": rows,
           "summary": {k: describe([r.get(k) for r in rows]) for k in keys}}
    if first and "risk" in first:
        v = [r["risk.violated"] for r in rows]
        out["risk"] = {"max_quality_loss": first["risk"]["epsilon"], "confidence": 1 - first["risk"]["delta"],
                       "violations": int(sum(v)), "splits": len(v), "violation_rate": float(np.mean(v))}
    if boots:
        out["bootstrap"] = boots
    return out


def write_seeds_result(res: dict, out_dir) -> str:
    """Write ``result.json`` (atomically) into ``out_dir``; return its path."""
    import json
    from pathlib import Path

    from route_switch.core.files import atomic_write_text

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / "result.json", json.dumps(res, indent=1) + "\n")
    return str(d / "result.json")


def format_seeds(res: dict) -> str:
    """Plain-text table: metric, mean ± std, [min, max], splits reaching it."""
    lines = [f"evalset {res['evalset']}: {len(res['seeds'])} random splits (seeds {','.join(map(str, res['seeds']))}), "
             f"{res['n_train']} train / {res['n_test']} test queries each", "",
             f"{'metric':<44} {'mean ± std':>17} {'min':>7} {'max':>7} {'n':>4}"]
    for k, d in res["summary"].items():
        if d["mean"] is None:
            lines.append(f"{k:<44} {'never reached':>17} {'':>7} {'':>7} {0:>4}")
            continue
        lines.append(f"{k:<44} {d['mean']:>8.4f} ± {d['std']:<6.4f} {d['min']:>7.4f} {d['max']:>7.4f} "
                     f"{d['n']:>4}" + (f" ({d['n_missing']} n/a)" if d["n_missing"] else ""))
    if "risk" in res:
        r = res["risk"]
        lines += ["", f"guarantee 'quality loss <= {r['max_quality_loss']}' with confidence {r['confidence']}: "
                      f"violated on {r['violations']} of {r['splits']} test splits ({r['violation_rate']:.1%}; "
                      f"allowed {1 - r['confidence']:.0%})"]
    if res.get("bootstrap"):
        lines += ["", "route-switch, resampling each split's test queries:"]
        lines += [f"seed {b['seed']}:\n{format_bootstrap(b)}" for b in res["bootstrap"]]
    return "\n".join(lines)


def bootstrap_ci(pred: np.ndarray, unit_cost: np.ndarray, test, anchor: int | None = None, *, n: int = 200,
                 level: float = 0.95, seed: int = 0) -> dict:
    """Percentile bootstrap intervals of AIQ and cost ratios on one test split (no refit).

    The choices of every knob value are computed once; each resample of test queries recomputes
    the sweep's (cost, quality) points and the single models' figures it is compared with.
    """
    rules = {"tau": np.array([select_tau(pred, unit_cost, v) for v in TAU_GRID])}
    if anchor is not None:
        rules["anchored"] = np.array([select_anchored(pred, unit_cost, v, anchor) for v in ANCHORED_GRID])
    rng = np.random.default_rng(seed)
    S, C = test.scores, test.costs
    draws: dict[str, dict[str, list]] = {r: {m: [] for m in METRICS} for r in rules}
    for _ in range(n):
        idx = rng.integers(0, len(S), len(S))
        s, c = S[idx], C[idx]
        sq, sc = s.mean(axis=0), c.mean(axis=0)
        best = int(np.lexsort((sc, -sq))[0])
        for r, choice in rules.items():
            ch, rows = choice[:, idx], np.arange(len(idx))[None, :]
            q, k = s[rows, ch].mean(axis=1), c[rows, ch].mean(axis=1)
            draws[r]["aiq"].append(aiq(k, q, float(sc.min()), float(sc.max()), float(sq[np.argmin(sc)])))
            draws[r]["cost_ratio_at_95"].append(cost_ratio_at(k, q, sq[best], sc[best], 0.95))
            draws[r]["cost_ratio_at_100"].append(cost_ratio_at(k, q, sq[best], sc[best], 1.0))
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out: dict = {"n_resamples": n, "level": level}
    for r, ms in draws.items():
        out[r] = {}
        for m, vals in ms.items():
            v = [x for x in vals if x is not None]
            out[r][m] = {"low": float(np.percentile(v, lo)) if v else None,
                         "high": float(np.percentile(v, hi)) if v else None,
                         "reached_share": len(v) / n}
    return out


def format_bootstrap(b: dict) -> str:
    """One line per rule: ``[low, high]`` of each metric."""
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    return "\n".join(f"  {b['level']:.0%} bootstrap interval ({rule}, {b['n_resamples']} resamples): " + ", ".join(
        f"{m} [{fmt(v['low'])}, {fmt(v['high'])}]" for m, v in ms.items())
        for rule, ms in b.items() if isinstance(ms, dict))
