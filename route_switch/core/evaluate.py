"""Evaluation harness: fit routers on a train split, report cost and quality on the test split.

``evaluate(train, test)`` returns one JSON-ready dict with, per router, the (cost, quality)
points of its τ sweep (and λ sweep for route-switch), AIQ, cost ratios at 95% / 100% of the best
single model's quality, the single models, the oracle, RouteLLM's APGR/CPT for two-model sets,
a blog-style summary table at a calibrated operating point, and the misroutes at that point.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from route_switch.core.evalset import Evalset
from route_switch.core.metrics import aiq, apgr, cost_ratio_at, cpt, upper_hull
from route_switch.core.baselines import make_router
from route_switch.core.seeds import bootstrap_ci, format_bootstrap
from route_switch.core.selection import (ANCHORED_GRID, LAMBDA_GRID, TAU_GRID, anchor_index, calibrate, cost_normaliser, outcome,
                        select_lambda, select_tau, sweep)

BASELINES = ("tfidf-lr", "static-rules", "random")
# Printed under the router LLM's rows: what each row is.
LLM_LEGEND = ["  llm: the router LLM alone (its tier probabilities swept with tau); route-switch+llm: the LLM fused "
              "with the estimator;",
              "  route-switch@llm: the estimator alone on these queries; tier-1/top line: the AIQ of only mixing "
              "the cheapest and the top tier."]


def _points(pred, unit_cost, test: Evalset, knob: str, grid) -> list[dict]:
    rule = select_tau if knob == "tau" else select_lambda
    top = int(np.argmax(unit_cost))
    pts = []
    for v in grid:
        choice = rule(pred, unit_cost, v)
        c, q = outcome(choice, test.scores, test.costs)
        pts.append({knob: round(float(v), 4), "cost": c, "quality": q, "top_share": float(np.mean(choice == top))})
    return pts


def curve_context(test: Evalset) -> dict:
    """What every router's curve on ``test`` is measured against: the single models' range and the best one."""
    single_c, single_q = test.costs.mean(axis=0), test.scores.mean(axis=0)
    best = int(np.lexsort((single_c, -single_q))[0])
    return {"c_min": float(single_c.min()), "c_max": float(single_c.max()),
            "q_floor": float(single_q[np.argmin(single_c)]),
            "best_q": float(single_q[best]), "best_c": float(single_c[best])}


def _summary(pts: list[dict], ctx: dict) -> dict:
    c = [p["cost"] for p in pts]
    q = [p["quality"] for p in pts]
    return {"aiq": aiq(c, q, ctx["c_min"], ctx["c_max"], ctx["q_floor"]),
            "cost_ratio_at_95": cost_ratio_at(c, q, ctx["best_q"], ctx["best_c"], 0.95),
            "cost_ratio_at_100": cost_ratio_at(c, q, ctx["best_q"], ctx["best_c"], 1.0)}


def oracle_points(test: Evalset) -> list[dict]:
    """Knows every outcome: per query the best true score − λ·normalised cost (λ=0: cheapest top scorer)."""
    # The oracle knows each query's actual costs too; the tiny cost term breaks ties towards cheaper.
    norm = test.costs / cost_normaliser(test.costs.mean(axis=0))
    pts = []
    for lam in LAMBDA_GRID:
        choice = (test.scores - (lam + 1e-9) * norm).argmax(axis=1)
        c, q = outcome(choice, test.scores, test.costs)
        pts.append({"lambda": float(lam), "cost": c, "quality": q})
    return pts


def evaluate(train: Evalset, test: Evalset, *, routers=("route-switch",) + BASELINES, estimator_params: dict | None = None,
             target_quality: float = 0.95, seed: int = 0, max_misroutes: int = 200, operating_point: bool = True,
             bootstrap: int = 0) -> dict:
    """Fit every router on ``train`` and report on ``test`` (see module docstring).

    ``operating_point=False`` skips calibrating τ on a validation slice (one more fit): sweeps only.
    ``bootstrap=N`` adds percentile intervals for route-switch from N resamples of the test queries.
    """
    t0 = time.time()
    single_c, single_q = test.costs.mean(axis=0), test.scores.mean(axis=0)
    best = int(np.lexsort((single_c, -single_q))[0])
    ctx = curve_context(test)
    out: dict = {
        "evalset": train.meta.get("spec") or train.source, "n_train": len(train), "n_test": len(test),
        "models": test.models,
        "singles": [{"name": m, "cost": float(c), "quality": float(q)} for m, c, q in zip(test.models, single_c, single_q)],
        "best_single": {"name": test.models[best], "quality": ctx["best_q"], "cost": ctx["best_c"]},
        "routers": {},
    }
    orc = oracle_points(test)
    out["oracle"] = {"cost": orc[0]["cost"], "quality": orc[0]["quality"]}
    out["oracle_aiq"] = _summary(orc, ctx)["aiq"]

    fitted = {}
    for name in routers:
        params = (estimator_params or {}) if name == "route-switch" else ({"seed": seed} if name == "random" else {})
        ts = time.time()
        r = make_router(name, **params).fit(train)
        fit_s = time.time() - ts
        ts = time.time()
        pred = r.score(test.prompts)
        score_s = time.time() - ts
        fitted[name] = (r, pred)
        if r.sweeps:
            pts = _points(pred, r.unit_cost_, test, "tau", TAU_GRID)
            res = {"points": pts, **_summary(pts, ctx)}
            if name == "route-switch":
                lpts = _points(pred, r.unit_cost_, test, "lambda", LAMBDA_GRID)
                res["lambda"] = {"points": lpts, **_summary(lpts, ctx)}
                anchor = anchor_index(train.scores.mean(axis=0), r.unit_cost_)
                apts = sweep(pred, r.unit_cost_, test.scores, test.costs, ANCHORED_GRID, "anchored", anchor)
                res["anchored"] = {"anchor": test.models[anchor], "points": apts, **_summary(apts, ctx)}
                if bootstrap:
                    res["bootstrap"] = bootstrap_ci(pred, r.unit_cost_, test, anchor, n=bootstrap, seed=seed)
        else:
            pts = _points(pred, r.unit_cost_, test, "tau", [0.0])
            res = {"points": pts, **_summary(pts, ctx)}
        res.update(fit_s=round(fit_s, 2), score_ms_per_query=round(1000 * score_s / max(len(test), 1), 3))
        est = getattr(r, "estimator_", None)
        if est is not None and getattr(est, "cv_", None):  # hyper-parameters chosen by cross-validation at fit
            res["cv"] = {k: v for k, v in est.cv_.items() if k != "scores"}
            res["cv"]["top"] = sorted(est.cv_.get("scores", []), key=lambda x: -x.get("aiq", -x["brier"]))[:5]
        out["routers"][name] = res

    main = out["routers"].get("route-switch")
    if main and "cv" in main:
        out["estimator_cv"] = main["cv"]
    if main:
        out.update(aiq=main["aiq"], cost_ratio_at_95=main["cost_ratio_at_95"], cost_ratio_at_100=main["cost_ratio_at_100"])
    if main and operating_point:
        tau = calibrated_tau(train, estimator_params or {}, target_quality, seed)
        r, pred = fitted["route-switch"]
        choice = select_tau(pred, r.unit_cost_, tau)
        c, q = outcome(choice, test.scores, test.costs)
        out["operating_point"] = {"tau": tau, "target_quality": target_quality, "cost": c, "quality": q,
                                  "calibrated_on": "20% validation slice of train"}
        out["misroutes"] = misroutes(test, choice, r.unit_cost_, max_misroutes)
    if len(test.models) == 2:
        out["routellm"] = routellm_metrics(out, test)
    out["table"] = summary_table(out)
    out["elapsed_s"] = round(time.time() - t0, 1)
    return out


def calibrated_tau(train: Evalset, estimator_params: dict, target_quality: float, seed: int) -> float:
    """τ reaching ``target_quality`` × best single quality on a validation slice of the training data."""
    fit_part, val = train.split(0.2, seed + 1)
    r = make_router("route-switch", **estimator_params).fit(fit_part)
    return calibrate(r.score(val.prompts), r.unit_cost_, val.scores, val.costs, knob="tau", target_quality=target_quality)


def misroutes(test: Evalset, choice: np.ndarray, unit_cost: np.ndarray, limit: int) -> list[dict]:
    """Test queries whose chosen model failed while a cheaper-or-same-cost model succeeded."""
    rows = []
    for i, k in enumerate(choice):
        got = test.scores[i, k]
        better = [j for j in range(len(test.models)) if unit_cost[j] <= unit_cost[k] and test.scores[i, j] > got]
        if better:
            j = min(better, key=lambda j: unit_cost[j])
            rows.append({"id": str(test.queries["id"].iloc[i]), "task": str(test.queries["task"].iloc[i]),
                         "prompt": test.prompts[i][:200], "chosen": test.models[k], "chosen_score": float(got),
                         "cheapest_success": test.models[j], "its_score": float(test.scores[i, j])})
    return rows[:limit]


def routellm_metrics(res: dict, test: Evalset) -> dict:
    """APGR and CPT(50%), CPT(80%) from route-switch's τ sweep (two-model sets only)."""
    strong = int(np.argmax(test.costs.mean(axis=0)))
    weak_q, strong_q = res["singles"][1 - strong]["quality"], res["singles"][strong]["quality"]
    out = {}
    for name, r in res["routers"].items():
        s = [p["top_share"] for p in r["points"]]
        q = [p["quality"] for p in r["points"]]
        out[name] = {"apgr": apgr(s, q, weak_q, strong_q), "cpt50": cpt(s, q, weak_q, strong_q, 0.5),
                     "cpt80": cpt(s, q, weak_q, strong_q, 0.8)}
    return out


def summary_table(res: dict) -> list[dict]:
    """Rows like the blog's table: cost and quality relative to sending everything to the best model."""
    bc, bq = res["best_single"]["cost"], res["best_single"]["quality"]
    rows = [{"router": f"all {res['best_single']['name']}", "cost": bc, "quality": bq}]
    for name in ("static-rules", "random"):
        if name in res["routers"]:
            p = res["routers"][name]["points"][0]
            rows.append({"router": name, "cost": p["cost"], "quality": p["quality"]})
    if "tfidf-lr" in res["routers"]:
        p = _at_quality(res["routers"]["tfidf-lr"]["points"], res.get("operating_point", {}).get("quality"))
        if p:
            rows.append({"router": "tfidf-lr (same quality)", "cost": p["cost"], "quality": p["quality"]})
    if "operating_point" in res:
        op = res["operating_point"]
        rows.append({"router": f"route-switch (tau={op['tau']:.3f})", "cost": op["cost"], "quality": op["quality"]})
    rows.append({"router": "oracle", "cost": res["oracle"]["cost"], "quality": res["oracle"]["quality"]})
    for r in rows:
        r["cost_rel"] = r["cost"] / bc if bc else None
        r["quality_rel"] = r["quality"] / bq if bq else None
    return rows


def _at_quality(points, quality):
    if quality is None:
        return None
    ok = [p for p in points if p["quality"] >= quality - 1e-12]
    return min(ok, key=lambda p: p["cost"]) if ok else max(points, key=lambda p: p["quality"])


def format_report(res: dict) -> str:
    """Plain-text report: the summary table and the sweep metrics per router."""
    lines = [f"evalset {res['evalset']}: {res['n_train']} train / {res['n_test']} test queries, "
             f"{len(res['models'])} models; best single = {res['best_single']['name']}",
             "", f"{'router':<34} {'cost':>10} {'quality':>8} {'cost/best':>9} {'qual/best':>9}"]
    for r in res["table"]:
        lines.append(f"{r['router']:<34} {r['cost']:>10.3g} {r['quality']:>8.3f} {r['cost_rel']:>9.1%} {r['quality_rel']:>9.1%}")
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    def sweep_rows(names):
        out = [f"{'sweep':<28} {'AIQ':>7} {'cost@95%':>9} {'cost@100%':>10}"]
        for name in names:
            r = res["routers"][name]
            for label, x in ((name, r), (name + " (lambda)", r.get("lambda")), (name + " (anchored)", r.get("anchored"))):
                if x:
                    out.append(f"{label:<28} {x['aiq']:>7.4f} {fmt(x['cost_ratio_at_95']):>9} "
                               f"{fmt(x['cost_ratio_at_100']):>10}")
            if "bootstrap" in r:
                out.append(format_bootstrap(r["bootstrap"]))
        return out

    llm_names = [n for n in ("llm", "route-switch+llm", "route-switch@llm") if n in res["routers"]]
    lines += [""] + sweep_rows([n for n in res["routers"] if n not in llm_names])
    lines.append(f"{'oracle':<28} {res['oracle_aiq']:>7.4f}")
    if "routellm" in res:
        lines += ["", "RouteLLM metrics (APGR, CPT50, CPT80):"]
        for name, m in res["routellm"].items():
            lines.append(f"  {name:<20} {m['apgr']:.3f}  {fmt(m['cpt50'])}  {fmt(m['cpt80'])}")
    if "bypass" in res:
        lines += ["", f"token bypass (median query {res['bypass']['median_tokens']:.0f} tokens):",
                  f"  {'<tokens':>8} {'bypassed':>9} {'misroutes':>9} {'q tier1':>8} {'q routed':>8} {'cost chg':>9}"]
        for b in res["bypass"]["thresholds"]:
            q1 = "n/a" if b["quality_bypassed_tier1"] is None else f"{b['quality_bypassed_tier1']:.3f}"
            qe = "n/a" if b["quality_bypassed_estimator"] is None else f"{b['quality_bypassed_estimator']:.3f}"
            lines.append(f"  {b['max_tokens']:>8} {b['bypassed_share']:>9.1%} {b['misroutes']:>9} {q1:>8} {qe:>8} "
                         f"{b['cost_change_share']:>+9.2%}")
    if "llm_eval" in res:
        e = res["llm_eval"]
        lines += ["", f"router LLM ({e['program']}, tier {e['distribution']}) on the same {e['n']} test queries "
                      f"(fusion fitted on {e['fit_n']} training queries; invalid answers {e['invalid_test']}"
                      + (f"; {e['dropped_demo_queries']} test queries dropped: they are the program's demos"
                         if e.get("dropped_demo_queries") else "") + "):"]
        lines += sweep_rows(llm_names) + [f"{'tier-1/top line':<28} {e['line_aiq']:>7.4f}"] + LLM_LEGEND
    if "misroutes" in res:
        lines.append(f"\nmisroutes at the operating point: {len(res['misroutes'])} (see misroutes.jsonl)")
    return "\n".join(lines)


def write_outputs(res: dict, out_dir: str | Path) -> dict[str, str]:
    """Write result.json, misroutes.jsonl and pareto.png into ``out_dir``; return their paths."""
    import json

    from route_switch.core.files import atomic_write_text

    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / "result.json", json.dumps(res, indent=1) + "\n")
    atomic_write_text(d / "misroutes.jsonl", "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in res.get("misroutes", [])))
    llm_names = ("llm", "route-switch+llm", "route-switch@llm")
    plot_pareto({**res, "routers": {k: v for k, v in res["routers"].items() if k not in llm_names}}, d / "pareto.png")
    files = {}
    if "llm_eval" in res:  # the LLM routers were measured on a subset: their own plot, with that subset's models
        e = res["llm_eval"]
        plot_pareto({**res, "routers": {k: res["routers"][k] for k in llm_names}, "singles": e["singles"],
                     "oracle": e["oracle"], "n_test": e["n"]}, d / "pareto_llm.png")
        files["plot_llm"] = str(d / "pareto_llm.png")
    return {"result": str(d / "result.json"), "misroutes": str(d / "misroutes.jsonl"), "plot": str(d / "pareto.png"),
            **files}


def plot_pareto(res: dict, path: str | Path) -> list[str]:
    """Cost–quality plot: single models (each labelled with its name), each router's sweep and
    hull, the oracle. Returns the single-model labels drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9.5, 5.5))
    s = res["singles"]
    ax.scatter([x["cost"] for x in s], [x["quality"] for x in s], c="dimgrey", s=18, label="single models")
    costs = np.log([max(x["cost"], 1e-12) for x in s]) if s else np.zeros(0)
    mid = (costs.min() + costs.max()) / 2 if len(costs) else 0.0
    labels = []
    for x, lc in zip(s, costs):
        right = len(costs) > 1 and lc > mid  # labels of the dearer half point left: they stay inside the axes
        ax.annotate(x["name"], (x["cost"], x["quality"]), fontsize=7, color="dimgrey", xytext=(-4 if right else 4, -9),
                    textcoords="offset points", ha="right" if right else "left", zorder=5,
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})
        labels.append(x["name"])
    for name, r in res["routers"].items():
        c = [p["cost"] for p in r["points"]]
        q = [p["quality"] for p in r["points"]]
        if len(c) > 1:
            h = upper_hull(c, q)
            ax.plot(h[:, 0], h[:, 1], "-", label=f"{name} (AIQ {r['aiq']:.3f})")
        else:
            ax.scatter(c, q, marker="s", s=40, label=name)
    ax.scatter([res["oracle"]["cost"]], [res["oracle"]["quality"]], marker="*", s=120, c="k", label="oracle")
    ax.set_xscale("log")
    ax.set_xlabel("mean cost per query (USD, log scale)")
    ax.set_ylabel("mean quality")
    ax.set_title(f"{res['evalset']}: cost vs quality on {res['n_test']} test queries")
    ax.grid(alpha=0.3)
    ax.margins(x=0.08, y=0.08)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides a label
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return labels


def bypass_report(train: Evalset, test: Evalset, thresholds=(4, 8, 16, 32, 64), estimator_params: dict | None = None,
                  target_quality: float = 0.95, seed: int = 0) -> dict:
    """What the token-threshold bypass saves and misroutes on ``test`` at each threshold.

    Models are tiers in cost order. For the queries under each threshold: the share bypassed
    (router calls avoided), their quality on tier 1 vs with the estimator's choice, the change in
    total cost, and misroutes (tier 1 failed where the estimator's choice succeeded).
    Tokens are counted with the router model's tokenizer when it is loaded, else ~4 chars/token.
    """
    from route_switch.core.tokens import count_tokens

    tau = calibrated_tau(train, estimator_params or {}, target_quality, seed)
    r = make_router("route-switch", **(estimator_params or {})).fit(train)
    choice = select_tau(r.score(test.prompts), r.unit_cost_, tau)
    cheapest = int(np.argmin(r.unit_cost_))
    rows = np.arange(len(test))
    tokens = np.array([count_tokens(p) for p in test.prompts])
    total_cost = test.costs[rows, choice].sum()
    out = {"tau": tau, "median_tokens": float(np.median(tokens)), "thresholds": []}
    for t in thresholds:
        m = tokens < t
        est_q, t1_q = test.scores[m, choice[m]], test.scores[m, cheapest]
        out["thresholds"].append({
            "max_tokens": int(t), "bypassed_share": float(m.mean()), "n_bypassed": int(m.sum()),
            "quality_bypassed_tier1": float(t1_q.mean()) if m.any() else None,
            "quality_bypassed_estimator": float(est_q.mean()) if m.any() else None,
            "misroutes": int((t1_q < est_q).sum()), "misroute_share_of_all": float((t1_q < est_q).sum() / len(test)),
            "cost_change_share": float((test.costs[m, cheapest].sum() - test.costs[m, choice[m]].sum()) / total_cost),
        })
    return out
