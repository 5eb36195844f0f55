"""Ablation: from the plain TF-IDF + LR baseline to route-switch's estimator, one difference at a time.

    python benchmarks/estimator_ablation.py [--spec dcrouter-3tier] [--seeds 0,1]
                                            [--variants plain,all] [--steps all]

Each step changes one thing relative to the step before it (``STEPS``), so the AIQ difference
between consecutive rows is what that one difference costs or gains. ``ONE_OFF`` rows change one
setting of the release-before-issue-20 default (``old default``). The variants are those of
``benchmarks/templated.py`` (same splits, exemplars from the training split only).
Prints one JSON line per run on stderr and the summary (mean ± sd of AIQ per step and variant,
and the paired change against the previous step) as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from templated import wrap  # noqa: E402

PLAIN_ENC = {"ngram_max": 1, "min_df": 1, "sublinear": 0, "max_chars": 0, "template": 0}
LR_ONLY = {"w": 1.0, "C": 1.0, "cv": 0}
OLD_ENC = {"ngram_max": 2, "min_df": 2, "sublinear": 1, "max_chars": 1000, "template": 0}
OLD = {"encoder_params": OLD_ENC, "w": 0.4, "k": 30, "prior": 1.0, "C": 1.0, "cv": 0}

# (name, estimator parameters): each differs from the row before in one respect.
STEPS = [
    ("tfidf-lr (baseline router)", None),
    ("estimator, baseline settings (1-grams, min_df 1, raw tf, no view, LR only, C 1)", {"encoder_params": PLAIN_ENC, **LR_ONLY}),
    ("+ bigrams", {"encoder_params": {**PLAIN_ENC, "ngram_max": 2}, **LR_ONLY}),
    ("+ min_df 2", {"encoder_params": {**PLAIN_ENC, "ngram_max": 2, "min_df": 2}, **LR_ONLY}),
    ("+ sublinear tf", {"encoder_params": {**PLAIN_ENC, "ngram_max": 2, "min_df": 2, "sublinear": 1}, **LR_ONLY}),
    ("+ head+tail view 1,000 chars", {"encoder_params": OLD_ENC, **LR_ONLY}),
    ("+ kNN w 0.4, k 30, prior 1 (old default)", OLD),
    ("+ template view, 8 markers x 3 tokens (max_chars kept)",
     {**OLD, "encoder_params": {**OLD_ENC, "template": 3, "template_markers": 8}}),
    ("+ CV choice of C, k, w and template strength (new default)", {}),
]
ONE_OFF = [
    ("old default, C 0.3", {**OLD, "C": 0.3}),
    ("old default, C 3", {**OLD, "C": 3.0}),
    ("old default, prior 0", {**OLD, "prior": 0.0}),
    ("old default, max_chars 0 (no view)", {**OLD, "encoder_params": {**OLD_ENC, "max_chars": 0}}),
    ("old default, w 1 (LR only)", {**OLD, "w": 1.0}),
    ("old default, w 0 (kNN only)", {**OLD, "w": 0.0}),
    ("new default, no template view", {"encoder_params": {"template": 0}}),
    ("new default, template 1 marker x 1 token", {"encoder_params": {"template": 1, "template_markers": 1}}),
    ("new default, template 8 markers x 3 tokens", {"encoder_params": {"template": 3, "template_markers": 8}}),
]


def main(argv=None):
    from route_switch.core.evaluate import evaluate
    from route_switch.core.spec import load_spec

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default="dcrouter-3tier")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--variants", default="plain,all")
    ap.add_argument("--steps", default="all", help="all, steps or one-off")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    rows = (STEPS if args.steps in ("all", "steps") else []) + (ONE_OFF if args.steps in ("all", "one-off") else [])
    spec = load_spec(args.spec)
    ev = spec.load()
    seeds = [int(s) for s in args.seeds.split(",")]
    aiq: dict = {}
    for seed in seeds:
        train0, test0 = ev.split(spec.test_size, seed)
        for v in args.variants.split(","):
            train, test = wrap(train0, test0, v, seed)
            for name, params in rows:
                if params is None:
                    res = evaluate(train, test, routers=("tfidf-lr",), seed=seed, operating_point=False)
                    r = res["routers"]["tfidf-lr"]
                else:
                    res = evaluate(train, test, routers=("route-switch",), estimator_params=params, seed=seed,
                                   operating_point=False)
                    r = res["routers"]["route-switch"]
                aiq.setdefault(v, {}).setdefault(name, {})[seed] = r["aiq"]
                print(json.dumps({"variant": v, "seed": seed, "step": name, "aiq": round(r["aiq"], 4),
                                  "fit_s": r["fit_s"], "cv": (r.get("cv") or {}).get("chosen")}), file=sys.stderr, flush=True)
    out = {"spec": args.spec, "seeds": seeds, "variants": {}}
    for v, by_step in aiq.items():
        table, prev = [], None
        for name, _ in rows:
            vals = by_step[name]
            a = np.array([vals[s] for s in seeds])
            row = {"step": name, "aiq_mean": round(float(a.mean()), 4),
                   "aiq_sd": round(float(a.std(ddof=1)), 4) if len(a) > 1 else 0.0}
            if prev is not None and name in dict(STEPS):
                row["change_vs_previous"] = round(float(np.mean([vals[s] - prev[s] for s in seeds])), 4)
            table.append(row)
            if name in dict(STEPS):
                prev = vals
        out["variants"][v] = table
    text = json.dumps(out, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
