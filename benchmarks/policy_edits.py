"""Are policy edits followed? Compliance of the router LLM before/after each edit, JSON output.

    python benchmarks/policy_edits.py [--program programs/default.yaml] [--edits benchmarks/policy_edits.yaml]
                                      [--style if] [--lm-kind local]

For each edit in the YAML file: route its queries with the program as it is and with the policy
added (``route_switch.policies.apply_policy``); report the share routed to the policy's tier
before and after, the decisions that changed, and the share of control queries (covered by no
policy) whose tier moved. "all" applies every edit at once. Every LM call goes through the disk
cache (``route_switch.optimize.cached_lm``), so a re-run is instant. ``--style`` renders the
policies in other wordings/positions, to measure which one a small model follows best; ``if`` is
what ``apply_policy`` writes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from route_switch.artifacts import load_program  # noqa: E402
from route_switch.paths import read_yaml  # noqa: E402
from route_switch.policies import HEADER, Policy, apply_policies, split_policies  # noqa: E402
from route_switch.program import RoutingProgram  # noqa: E402


def _section(policies, line) -> str:
    return HEADER + "\n" + "\n".join(line(p) for p in policies)


# name -> (instruction body, policies) -> instruction text. "if" is the product's rendering.
STYLES = {
    "if": None,
    "arrow": lambda body, ps: body + "\n\n" + _section(ps, lambda p: f"- {p.topic} → tier {p.tier}."),
    "if-top": lambda body, ps: (_section(ps, lambda p: p.render()).replace("above", "below") + "\n\n" + body),
    "always": lambda body, ps: body + "\n\n" + _section(
        ps, lambda p: f"- Requests about {p.topic}: always answer {p.tier}, however easy or hard they look."),
    "check-first": lambda body, ps: ("First check the policies at the end; if one applies, answer its tier.\n"
                                     + body + "\n\n" + _section(ps, lambda p: p.render())),
}


def with_policies(program: RoutingProgram, policies: list[Policy], style: str) -> RoutingProgram:
    if STYLES[style] is None:
        return apply_policies(program, policies)
    body, existing = split_policies(program.instruction)
    text = STYLES[style](body, existing + policies)
    return RoutingProgram(program.name, program.tiers, text, program.demos)


def load_edits(path) -> dict:
    data = read_yaml(path)
    edits = data.get("edits") if isinstance(data, dict) else None
    if not isinstance(edits, list) or not edits:
        raise SystemExit(f"{path}: needs a non-empty 'edits' list")
    return data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--program", default=str(ROOT / "programs" / "default.yaml"))
    ap.add_argument("--edits", default=str(ROOT / "benchmarks" / "policy_edits.yaml"))
    ap.add_argument("--style", default="if", choices=sorted(STYLES))
    ap.add_argument("--lm-kind", default="local", help="local (embedded model) or fake (the FAKE engine's policy mode, for tests)")
    ap.add_argument("--only", default="", help="comma-separated edit names (default: all)")
    args = ap.parse_args(argv)

    from route_switch.optimize import cached_lm
    from route_switch.paths import cache_dir
    from route_switch.program import RouterLLM

    base = load_program(args.program)
    data = load_edits(args.edits)
    edits = [e for e in data["edits"] if not args.only or e["name"] in args.only.split(",")]
    controls = list(data.get("controls") or [])
    lm_cfg = {"kind": "fake", "mode": "policy"} if args.lm_kind == "fake" else {"kind": args.lm_kind}
    lm, cache = cached_lm(lm_cfg, base.labels, cache_dir() / "lm")
    t0 = time.perf_counter()

    def route(program, queries) -> list[int | None]:
        router = RouterLLM(program, lm=lm)
        out = []
        for q in queries:
            try:
                out.append(router.predict(q)[0] + 1)
            except Exception:  # an invalid answer counts as non-compliant
                out.append(None)
        return out

    all_queries = [q for e in edits for q in e["queries"]]
    before = dict(zip(all_queries + controls, route(base, all_queries + controls)))

    def changed(queries, after) -> list[dict]:
        return [{"query": q, "before": before[q], "after": a} for q, a in zip(queries, after) if a != before[q]]

    def compliance(queries, tiers, tier) -> float:
        return round(100 * sum(t == tier for t in tiers) / len(queries), 1)

    results = []
    for e in edits:
        policy = Policy(e["topic"], int(e["tier"]))
        after = route(with_policies(base, [policy], args.style), e["queries"] + controls)
        a_q, a_c = after[: len(e["queries"])], after[len(e["queries"]):]
        results.append({
            "edit": e["name"], "policy": policy.render(), "tier": policy.tier, "n": len(e["queries"]),
            "compliance_before": compliance(e["queries"], [before[q] for q in e["queries"]], policy.tier),
            "compliance_after": compliance(e["queries"], a_q, policy.tier),
            "changed": changed(e["queries"], a_q),
            "controls_changed_pct": round(100 * len(changed(controls, a_c)) / max(1, len(controls)), 1),
            "controls_changed": changed(controls, a_c),
        })

    combined_program = with_policies(base, [Policy(e["topic"], int(e["tier"])) for e in edits], args.style)
    after_all = route(combined_program, all_queries + controls)
    per_edit, i = {}, 0
    for e in edits:
        n = len(e["queries"])
        per_edit[e["name"]] = compliance(e["queries"], after_all[i:i + n], int(e["tier"]))
        i += n
    ctl = after_all[len(all_queries):]
    n_all = len(all_queries)
    mean = lambda xs: round(sum(xs) / len(xs), 1)
    report = {
        "program": args.program, "style": args.style, "lm": args.lm_kind,
        "n_edits": len(edits), "n_queries": n_all, "n_controls": len(controls),
        "summary": {
            "compliance_before_mean": mean([r["compliance_before"] for r in results]),
            "compliance_after_mean": mean([r["compliance_after"] for r in results]),
            "compliance_after_all_edits_together": round(100 * sum(
                per_edit[e["name"]] * len(e["queries"]) / 100 for e in edits) / n_all, 1),
            "controls_changed_pct_mean": mean([r["controls_changed_pct"] for r in results]),
            "controls_changed_pct_all_edits": round(100 * len(changed(controls, ctl)) / max(1, len(controls)), 1),
        },
        "edits": results,
        "all_edits_together": {"instruction": combined_program.instruction, "compliance": per_edit,
                               "controls_changed": changed(controls, ctl)},
        "lm_calls": {"cache_hits": cache.hits if cache else None, "model_calls": cache.misses if cache else None},
        "seconds": round(time.perf_counter() - t0, 1), "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
