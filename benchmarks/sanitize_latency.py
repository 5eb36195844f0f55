"""Time of the sanitiser (``strip_routing_directives``) per prompt, on what ``route()`` hands it.

    python benchmarks/sanitize_latency.py [--evalset dcrouter-3tier] [--n 1000] [--repeat 5]

Three sets: ``n`` held-out prompts of the evalset as the estimator sees them (the encoder's
head-and-tail view, which ``route()`` sanitises), ``n`` open-ended ``alpacaeval2`` instructions
(prose, some non-ASCII), and every query of the injection corpora (short, mostly directives, many
Unicode disguises). The sanitiser's caches are cleared before each pass, so every pass reads each
prompt cold; the best of ``repeat`` passes is reported (the machine is shared: see ``load``).
``text_changed``: prompts whose scored text the sanitiser changes (on the evalset and alpacaeval2
sets, none holds a routing directive, so each is a false positive unless a prompt really does).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, fitted_router_dir, read_corpus_yaml  # noqa: E402


def _corpus_queries() -> list[str]:
    out = []
    for f in sorted((ROOT / "benchmarks").glob("injection_*.yaml")):
        c = read_corpus_yaml(f)  # as the injection benchmark reads it
        for section in ("directives", "legitimate"):
            for d in c.get(section) or []:
                q = d.get("query") if isinstance(d, dict) else d
                if isinstance(q, str):
                    out.append(q)
    return out


def _alpaca(n: int, seed: int) -> list[str]:
    import pandas as pd

    from route_switch.core.paths import resolve_data_path

    path = resolve_data_path("alpacaeval2.parquet")  # $ROUTE_SWITCH_DATA, else ../shared/data
    prompts = sorted(set(pd.read_parquet(path, columns=["prompt"])["prompt"]))
    random.Random(seed).shuffle(prompts)
    return prompts[:n]


def time_set(texts: list[str], repeat: int, show: int = 0) -> dict:
    from route_switch.core import sanitize
    from route_switch.core.directive_model import shipped_model

    best = None
    for _ in range(repeat):
        sanitize.normalise.cache_clear()
        sanitize._cue_names.cache_clear()
        if model := shipped_model():
            model.forget()
        t0 = time.perf_counter()
        for t in texts:
            sanitize.strip_routing_directives(t)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    changed = [t for t in texts if sanitize.strip_routing_directives(t) != t]
    return {"n": len(texts), "mean_chars": round(sum(map(len, texts)) / max(len(texts), 1)),
            "non_ascii": sum(not t.isascii() for t in texts), "us_per_prompt": round(best / len(texts) * 1e6, 1),
            "text_changed": len(changed), "changed_examples": [t[:300] for t in changed[:show]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evalset", default="dcrouter-3tier")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--show", type=int, default=3, help="print this many prompts whose scored text changes")
    a = ap.parse_args()
    from route_switch.routing.controller import Router

    router_dir, test = fitted_router_dir(a.evalset)
    router = Router.from_config(router_dir)
    random.Random(a.seed).shuffle(test)
    views = [router._estimator_view(q) for q in test[:a.n]]
    out = {"load": os.getloadavg()[0], "evalset_views": time_set(views, a.repeat, a.show),
           "alpacaeval2": time_set(_alpaca(a.n, a.seed), a.repeat, a.show),
           "injection_corpora": time_set(_corpus_queries(), a.repeat)}
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
