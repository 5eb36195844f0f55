"""Does the weekly job catch up when traffic drifts, and does it never make things worse?

Simulates weeks of traffic on any long-format outcome file with a ``task`` column
(``id, prompt, task, model, score, cost_usd``), e.g. ``../shared/data/dcrouter.parquet``:

* week 0: the start tasks only. Their queries are logged and ``route-switch reoptimize`` (replay
  labels) fits the estimator and optimises the router program: the deployed router.
* each following week: a fresh sample of traffic from a mix moving toward the drift tasks
  (``--mix``, default 30% → 90%) is routed through ``route()`` by the deployed router, which logs
  it; ``route-switch reoptimize`` runs for real (a subprocess, the embedded router LLM unless
  ``--router-lm fake``, labels replayed from the file); then AIQ and cost at 95% of the best single
  model's quality are measured on held-out queries of that week's mix, before and after the run,
  together with a router fitted from scratch on every label seen so far.
* a no-drift control: the same weeks from the same week 0 with start-task traffic only.

    python benchmarks/weekly_drift.py --data ../shared/data/dcrouter.parquet \\
        --models gemma-2-9b-it,llama-3.1-8b-instruct,llama-3.1-nemotron-51b-instruct \\
        --start-tasks mmlu,arc_challenge,commonsense_qa,openbook_qa --drift-tasks human_eval,mbpp,math \\
        --weeks 3 --per-week 200 --seeds 0,1,2 --json

``--json`` prints ``{"weeks": [{"week", "seed", "aiq_before", "aiq_after", "promoted", "drift",
"minutes", ...}], "control": [...]}``; a PNG of AIQ per week is written to ``--png``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="long-format outcome file with a task column")
    ap.add_argument("--models", required=True, help="tier models, cheapest first, comma-separated")
    ap.add_argument("--start-tasks", required=True)
    ap.add_argument("--drift-tasks", required=True)
    ap.add_argument("--weeks", type=int, default=3)
    ap.add_argument("--per-week", type=int, default=200, help="logged queries per week (all labelled)")
    ap.add_argument("--test-per-week", type=int, default=200, help="held-out queries of each week's mix")
    ap.add_argument("--mix", default=None, help="drift share per week, e.g. 0.3,0.6,0.9 (default 0.3 → 0.9)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--router-lm", default="local", choices=("local", "fake"),
                    help="local: the embedded router LLM (real); fake: the FAKE engine (fast, program step not real)")
    ap.add_argument("--num-trials", type=int, default=3)
    ap.add_argument("--num-candidates", type=int, default=3)
    ap.add_argument("--n-train", type=int, default=60)
    ap.add_argument("--n-val", type=int, default=12)
    ap.add_argument("--n-gate", type=int, default=30)
    ap.add_argument("--n-test", type=int, default=40)
    ap.add_argument("--no-control", action="store_true")
    ap.add_argument("--work", default=None, help="keep the simulated projects here (default: a temp dir)")
    ap.add_argument("--png", default="runs/weekly_drift.png")  # runs/ is not tracked
    ap.add_argument("--json", action="store_true")
    return ap.parse_args(argv)


def load_data(path: str, models: list[str], start: list[str], drift: list[str]):
    from route_switch.core.errors import InputError
    from route_switch.core.evalset import load_evalset

    ev = load_evalset(path, models=models)
    tasks = ev.queries["task"].astype(str).to_numpy() if "task" in ev.queries else np.array([""] * len(ev))
    if not (tasks != "").any():
        raise InputError("needs a non-empty 'task' column to tell start from drift traffic", file=path, field="task")
    known = sorted(set(tasks))
    for flag, names in (("--start-tasks", start), ("--drift-tasks", drift)):
        missing = [t for t in names if t not in known]
        if missing:
            raise InputError(f"{flag}: task(s) {missing} not in the file; it has {known}", file=path, field="task")
    return ev, tasks


class Pools:
    """Start-task and drift-task query indices, drawn without replacement (each query used once)."""

    def __init__(self, tasks, start, drift, rng):
        self.rng = rng
        self.left = {"start": list(rng.permutation(np.flatnonzero(np.isin(tasks, start)))),
                     "drift": list(rng.permutation(np.flatnonzero(np.isin(tasks, drift))))}

    def copy(self, rng):
        p = Pools.__new__(Pools)
        p.rng, p.left = rng, {k: list(v) for k, v in self.left.items()}
        return p

    def take(self, n: int, drift_share: float) -> list[int]:
        k = int(round(n * drift_share))
        out = [self.left["drift"].pop() for _ in range(min(k, len(self.left["drift"])))]
        out += [self.left["start"].pop() for _ in range(min(n - len(out), len(self.left["start"])))]
        if len(out) < n:
            print(f"warning: pools exhausted, {len(out)} of {n} queries drawn", file=sys.stderr)
        return list(self.rng.permutation(out))


def tiers_of(ev) -> list[dict]:
    # prices only matter for labelling estimates: the replayed costs are the file's own
    mean = ev.costs.mean(axis=0)
    return [{"name": m, "model": m, "price_in": float(c * 1e3), "price_out": float(c * 1e3)} for m, c in zip(ev.models, mean)]


def write_job(proj: Path, week: int, args, ev, seed: int) -> Path:
    import yaml

    from route_switch.core.paths import packaged_dir

    lm = {"kind": "fake"} if args.router_lm == "fake" else {"kind": "local"}
    job = {"name": "default", "start_program": str(packaged_dir("programs") / "default.yaml"),
           "estimator_dir": "estimators/prod", "route_log": f"logs/week-{week}.jsonl", "period_days": 7,
           "sample_size": args.per_week, "seed": seed, "evalset": "labels/evalset.jsonl", "tiers": tiers_of(ev),
           "router_lm": lm, "labeling": {"replay": str(Path(args.data).resolve())},
           "optimize": {"num_candidates": args.num_candidates, "num_trials": args.num_trials, "n_train": args.n_train,
                        "n_val": args.n_val, "n_gate": args.n_gate, "n_test": args.n_test},
           "report_dir": "reports", "lock_file": "run/.lock", "cache_dir": str(proj.parent / "cache"), "work_dir": "run"}
    path = proj / "weekly.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def log_traffic(proj: Path, week: int, prompts: list[str]) -> None:
    """Route the week's traffic as an app would: ``route()`` with the deployed router, logging each decision."""
    from route_switch import route
    from route_switch.routing.controller import Router
    from route_switch.core.decision import Decision
    from route_switch.core.routelog import RouteLog

    rl = RouteLog(proj / "logs" / f"week-{week}.jsonl", privacy="full")
    est = proj / "estimators" / "prod"
    if (est / "router.yaml").exists():
        r = Router.from_config(est)
        r.route_log = rl
        for q in prompts:
            route(q, router=r)
    else:  # week 0: no router yet; the app sends everything to the top tier
        for q in prompts:
            rl.write(q, Decision(tier=3, tier_name="top", model="top", path="default", reason="no router yet"))
    rl.close()


def run_job(job: Path) -> tuple[dict, float]:
    """``route-switch reoptimize`` in a subprocess; its JSON report and the minutes taken."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.time()
    p = subprocess.run([sys.executable, "-m", "route_switch.cli", "reoptimize", str(job)], env=env,
                       capture_output=True, text=True)
    minutes = (time.time() - t) / 60
    reports = sorted((job.parent / "reports").glob("*.json"), key=lambda f: f.stat().st_mtime)
    if p.returncode != 0 or not reports:
        raise RuntimeError(f"reoptimize failed ({p.returncode}): {p.stderr[-2000:]}")
    return json.loads(reports[-1].read_text()), minutes


def measure(est_dir: Path, test) -> dict:
    """AIQ and cost at 95% of the best single model's quality of the estimator in ``est_dir`` on ``test``."""
    from route_switch.core.estimator import QualityEstimator
    from route_switch.core.evaluate import _points, _summary, curve_context
    from route_switch.core.selection import TAU_GRID

    est = QualityEstimator.load(est_dir)
    cols = [est.models_.index(m) for m in test.models]
    pts = _points(est.predict(test.prompts)[:, cols], est.unit_cost_[cols], test, "tau", TAU_GRID)
    s = _summary(pts, curve_context(test))
    return {"aiq": s["aiq"], "cost95": s["cost_ratio_at_95"]}


def scratch(proj: Path, ev_models, tiers, seed: int, test) -> dict:
    """A router fitted from scratch on every label seen so far (the merged evalset)."""
    from route_switch.core.evalset import load_evalset
    from route_switch.routing.fitting import fit
    from route_switch.core.tiers import tiers_from_list

    all_labels = load_evalset(proj / "labels" / "evalset.jsonl", models=ev_models)
    out = proj / "run" / "scratch"
    fit(all_labels, out, tiers=tiers_from_list(tiers), seed=seed)
    return measure(out, test)


def run_arm(arm: str, proj: Path, pools: Pools, shares, args, ev, seed: int) -> list[dict]:
    rows = []
    for w, share in enumerate(shares, 1):
        traffic, test_idx = pools.take(args.per_week, share), pools.take(args.test_per_week, share)
        test = ev.subset(np.sort(test_idx))
        log_traffic(proj, w, [ev.prompts[i] for i in traffic])
        before = measure(proj / "estimators" / "prod", test)
        res, minutes = run_job(write_job(proj, w, args, ev, seed))
        after = measure(proj / "estimators" / "prod", test)
        scr = scratch(proj, ev.models, tiers_of(ev), seed, test)
        est = res.get("estimator", {})
        row = {"week": w, "seed": seed, "aiq_before": before["aiq"], "aiq_after": after["aiq"],
               "promoted": bool(any(res["promoted"].values())), "drift": bool(res.get("drift", {}).get("flagged")),
               "minutes": round(minutes, 2), "drift_share": float(share), "aiq_scratch": scr["aiq"],
               "cost95_before": before["cost95"], "cost95_after": after["cost95"], "cost95_scratch": scr["cost95"],
               "promoted_parts": res["promoted"], "verdict": res.get("verdict"),
               "estimator_gain": est.get("gain"), "program_gain": res.get("program", {}).get("gain"),
               "drift_groups": [{k: g.get(k) for k in ("terms", "n", "tier")} for g in res.get("drift", {}).get("groups", [])],
               "focus": res.get("route_log", {}).get("focus"), "timings_s": res.get("timings_s")}
        rows.append(row)
        print(f"[{arm} seed {seed} week {w}] share {share:.0%}: AIQ {before['aiq']:.4f} -> {after['aiq']:.4f} "
              f"(scratch {scr['aiq']:.4f}) promoted {res['promoted']} drift {row['drift']} {minutes:.1f} min",
              file=sys.stderr)
    return rows


def one_seed(args, ev, tasks, seed: int, work: Path) -> tuple[list[dict], list[dict], dict]:
    start, drift = args.start_tasks.split(","), args.drift_tasks.split(",")
    pools = Pools(tasks, start, drift, np.random.default_rng(seed))
    proj = work / f"seed-{seed}" / "drift"
    (proj / "labels").mkdir(parents=True, exist_ok=True)
    log_traffic(proj, 0, [ev.prompts[i] for i in pools.take(args.per_week, 0.0)])
    w0, m0 = run_job(write_job(proj, 0, args, ev, seed))
    week0 = {"seed": seed, "minutes": round(m0, 2), "promoted": w0["promoted"], "timings_s": w0.get("timings_s")}
    print(f"[seed {seed} week 0] start tasks only: promoted {w0['promoted']} {m0:.1f} min", file=sys.stderr)
    ctrl_proj = proj.parent / "control"
    shutil.copytree(proj, ctrl_proj)
    ctrl_pools = pools.copy(np.random.default_rng(seed + 1000))
    shares = ([float(x) for x in args.mix.split(",")] if args.mix else list(np.linspace(0.3, 0.9, args.weeks)))[: args.weeks]
    weeks = run_arm("drift", proj, pools, shares, args, ev, seed)
    control = [] if args.no_control else run_arm("control", ctrl_proj, ctrl_pools, [0.0] * len(shares), args, ev, seed)
    return weeks, control, week0


def _ms(xs) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    return f"{np.mean(xs):.4f} ± {np.std(xs, ddof=1) if len(xs) > 1 else 0:.4f}"


def table(rows: list[dict], title: str) -> str:
    L = [f"{title}", "| week | drift share | AIQ before | AIQ after | after − before | scratch | after − scratch | "
         "cost@95 before | cost@95 after | promoted | drift flagged | minutes |", "|---" * 12 + "|"]
    for w in sorted({r["week"] for r in rows}):
        rs = [r for r in rows if r["week"] == w]
        L.append(f"| {w} | {rs[0]['drift_share']:.0%} | {_ms([r['aiq_before'] for r in rs])} | "
                 f"{_ms([r['aiq_after'] for r in rs])} | {_ms([r['aiq_after'] - r['aiq_before'] for r in rs])} | "
                 f"{_ms([r['aiq_scratch'] for r in rs])} | {_ms([r['aiq_after'] - r['aiq_scratch'] for r in rs])} | "
                 f"{_ms([r['cost95_before'] for r in rs])} | {_ms([r['cost95_after'] for r in rs])} | "
                 f"{sum(r['promoted'] for r in rs)}/{len(rs)} | {sum(r['drift'] for r in rs)}/{len(rs)} | "
                 f"{_ms([r['minutes'] for r in rs])} |")
    return "\n".join(L)


def plot(out: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, style in (("weeks", "-"), ("control", ":")):
        rows = out[key]
        if not rows:
            continue
        ws = sorted({r["week"] for r in rows})
        for field, colour in (("aiq_before", "tab:red"), ("aiq_after", "tab:green"), ("aiq_scratch", "tab:grey")):
            m = [np.mean([r[field] for r in rows if r["week"] == w]) for w in ws]
            ax.plot(ws, m, style, color=colour, marker="o",
                    label=f"{'drift' if key == 'weeks' else 'control'}: {field.replace('aiq_', '')}")
    ax.set_xlabel("week")
    ax.set_ylabel("AIQ on that week's mix (held out)")
    ax.set_xticks(sorted({r["week"] for r in out["weeks"]}))
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    args = parse(argv)
    models = args.models.split(",")
    ev, tasks = load_data(args.data, models, args.start_tasks.split(","), args.drift_tasks.split(","))
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="weekly-drift-"))
    out = {"weeks": [], "control": [], "week0": [], "config": {k: v for k, v in vars(args).items()}}
    for seed in [int(s) for s in args.seeds.split(",")]:
        w, c, w0 = one_seed(args, ev, tasks, seed, work / "projects")
        out["weeks"] += w
        out["control"] += c
        out["week0"].append(w0)
    if args.png:
        plot(out, args.png)
    if args.json:
        print(json.dumps(out, indent=1, default=str))
    else:
        print(table(out["weeks"], "Drifted traffic (mean ± sd over seeds)"))
        if out["control"]:
            print()
            print(table(out["control"], "No-drift control"))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
