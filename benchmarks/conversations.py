"""Multi-turn routing: how often a follow-up is routed below the tier of its conversation's first turn.

    python benchmarks/conversations.py [--evalsets dcrouter-3tier,zeroeval-3tier] [--seeds 0,1,2]
                                       [--context-tokens 256] [--file benchmarks/data/conversations.yaml]

The conversations are written for this benchmark (``benchmarks/data/conversations.yaml``): ``hard`` ones
open with a demanding task and continue with follow-ups that only make sense with it ("Now do the
same for 6k+5.", "Shorter, please."); ``easy`` ones are a control. For each evalset and split seed
the estimator router is fitted on the train split, then every follow-up is routed four ways:

- ``last_turn``: the last user message alone (what the proxy did before);
- ``context``: the conversation (last user message + earlier user turns within the token budget);
- ``sticky``: last turn only, with a session key (the session floor);
- ``context+sticky``: both.

Reported: the share of hard follow-ups routed below their first turn's tier (of all of them, and of
those whose first turn went above tier 1), and for the easy control the mean tier and the share of
follow-ups sent above tier 1 (the cost side). Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = ("last_turn", "context", "sticky", "context+sticky")


def load_conversations(path: Path) -> list[dict]:
    from route_switch.core.files import read_yaml

    convs = read_yaml(path)
    for i, c in enumerate(convs):
        if not isinstance(c.get("turns"), list) or len(c["turns"]) < 2 or c.get("kind") not in ("hard", "easy"):
            raise SystemExit(f"{path}: entry {i + 1}: needs kind hard|easy and >= 2 turns")
    return convs


def messages(turns: list[str]) -> list[dict]:
    out = []
    for i, t in enumerate(turns):
        if i:
            out.append({"role": "assistant", "content": "Here is the answer to that."})
        out.append({"role": "user", "content": t})
    return out


def route_conversations(router_dir, convs, context_tokens: int) -> dict:
    """Per mode: first-turn tier and follow-up tiers of every conversation."""
    from route_switch.routing.controller import Router
    from route_switch.core.conversation import ConversationConfig

    res = {}
    for mode in MODES:
        r = Router.from_config(router_dir)
        r._cache_size = 0  # every follow-up is routed, not served from the decision cache
        r.conversation = ConversationConfig(context_tokens=context_tokens if "context" in mode else 0,
                                            sticky="sticky" in mode)
        rows = []
        for k, c in enumerate(convs):
            session = f"s{k}" if "sticky" in mode else None
            first = r.route(c["turns"][0], session=session).tier
            ds = [r.route(messages(c["turns"][: j + 1]), session=session) for j in range(1, len(c["turns"]))]
            rows.append({"id": c["id"], "kind": c["kind"], "first": first, "follow": [d.tier for d in ds],
                         "ms": [d.latency_ms for d in ds]})
        res[mode] = rows
    return res


def summarise(rows: list[dict]) -> dict:
    hard = [(r["first"], t) for r in rows if r["kind"] == "hard" for t in r["follow"]]
    above1 = [(f, t) for f, t in hard if f > 1]
    easy = [t for r in rows if r["kind"] == "easy" for t in r["follow"]]
    ms = sorted(m for r in rows for m in r["ms"])
    return {"hard_follow_ups": len(hard), "route_ms_p50": round(ms[len(ms) // 2], 3),
            "below_first_share": round(float(np.mean([t < f for f, t in hard])), 4),
            "first_above_tier1": len(above1),
            "below_first_share_of_first_above_tier1": round(float(np.mean([t < f for f, t in above1])), 4) if above1 else None,
            "hard_follow_up_mean_tier": round(float(np.mean([t for _, t in hard])), 3),
            "easy_follow_ups": len(easy),
            "easy_follow_up_mean_tier": round(float(np.mean(easy)), 3) if easy else None,
            "easy_follow_up_above_tier1_share": round(float(np.mean([t > 1 for t in easy])), 4) if easy else None}


def fitted(evalset: str, seed: int) -> Path:
    from route_switch.routing.fitting import fit
    from route_switch.core.paths import cache_dir
    from route_switch.core.spec import load_spec

    out = cache_dir() / "bench" / f"router-{evalset}-seed{seed}"
    if not (out / "router.yaml").exists():
        spec = load_spec(evalset)
        spec.seed = seed
        train, _test = spec.train_test()
        fit(train, out, tiers=spec.tiers or None, target_quality=0.95)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--evalsets", default="dcrouter-3tier,zeroeval-3tier")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--context-tokens", type=int, default=256)
    ap.add_argument("--file", default=str(ROOT / "benchmarks" / "data" / "conversations.yaml"))
    args = ap.parse_args(argv)
    convs = load_conversations(Path(args.file))
    out = {"conversations": len(convs), "context_tokens": args.context_tokens, "load_avg": os.getloadavg()[0],
           "results": {}}
    for name in [e for e in args.evalsets.split(",") if e]:
        per_seed = {}
        for s in [int(x) for x in args.seeds.split(",") if x]:
            rows = route_conversations(fitted(name, s), convs, args.context_tokens)
            per_seed[s] = {m: summarise(rows[m]) for m in MODES}
        summary = {}
        for m in MODES:
            vals = [per_seed[s][m]["below_first_share"] for s in per_seed]
            easy = [per_seed[s][m]["easy_follow_up_above_tier1_share"] for s in per_seed]
            summary[m] = {"below_first_share_mean": round(float(np.mean(vals)), 4),
                          "route_ms_p50": float(np.median([per_seed[s][m]["route_ms_p50"] for s in per_seed])),
                          "below_first_share_min_max": [min(vals), max(vals)],
                          "easy_above_tier1_mean": round(float(np.mean(easy)), 4)}
        out["results"][name] = {"summary": summary, "per_seed": per_seed}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
