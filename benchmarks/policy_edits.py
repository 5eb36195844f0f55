"""Are policy edits followed? Compliance of the router LLM before/after each edit, JSON output.

    python benchmarks/policy_edits.py [--program programs/default.yaml] [--edits benchmarks/policy_edits.yaml]
                                      [--style if+demo] [--lm-kind local]

For each edit in the YAML file: route its queries with the program as it is and with the policy
added (``route_switch.llm.policies.apply_policy``); report the share routed to the policy's tier
before and after, the decisions that changed, and the share of control queries (covered by no
policy) whose tier moved. "all" applies every edit at once. Every LM call goes through the disk
cache (``route_switch.llm.cache.cached_lm``), so a re-run is instant. ``--style`` renders the
policies in other wordings/positions, to measure which one a small model follows best. ``match``
(default) is what ``apply_policy`` writes with the edit's ``example`` (plus optional ``examples`` and
``not`` lists): enforced by the policy matcher (``route_switch.llm.policy_match``), calibrated on the
training queries of the shared data; the JSON then also holds each policy's calibration. ``if`` is
a rule without examples (a hint the LLM reads), ``if+demo`` that rule plus the example as a demo.
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

from route_switch.llm.artifacts import load_program  # noqa: E402
from route_switch.core.files import read_yaml  # noqa: E402
from route_switch.llm.policies import HEADER, Policy, apply_policies, apply_policy, split_policies  # noqa: E402
from route_switch.llm.program import RoutingProgram  # noqa: E402


def _section(policies, line) -> str:
    return HEADER + "\n" + "\n".join(line(p) for p in policies)


def _text(fn):
    """A style that only rewrites the instruction: fn(body, policies) -> text."""
    def style(program, edits):
        body, existing = split_policies(program.instruction)
        text = fn(body, existing + [Policy(e["topic"], int(e["tier"])) for e in edits])
        return RoutingProgram(program.name, program.tiers, text, program.demos)
    return style


def _product(program, edits):
    return apply_policies(program, [Policy(e["topic"], int(e["tier"])) for e in edits])


def _enforced(program, edits):
    """What ``apply_policy`` writes with the edit's examples: enforced by the policy matcher."""
    for e in edits:
        program = apply_policy(program, Policy(e["topic"], int(e["tier"])), example=e.get("example"),
                               examples=e.get("examples") or (), counter_examples=e.get("not") or ())
    return program


def _with_demos(program, edits):
    """The product's section plus each edit's example query as a demo (demos.yaml is hand-editable too)."""
    for e in edits:
        program = apply_policy(program, Policy(e["topic"], int(e["tier"])))
        if e.get("example"):
            program.demos.append({"query": e["example"], "tier": int(e["tier"])})
    return program


# name -> (program, edits) -> program with the edits. "if" is what apply_policy writes.
STYLES = {
    "match": _enforced,
    "if": _product,
    "if+demo": _with_demos,
    "arrow": _text(lambda body, ps: body + "\n\n" + _section(ps, lambda p: f"- {p.topic} → tier {p.tier}.")),
    "if-top": _text(lambda body, ps: _section(ps, lambda p: p.render()).replace("above", "below") + "\n\n" + body),
    "always": _text(lambda body, ps: body + "\n\n" + _section(
        ps, lambda p: f"- Requests about {p.topic}: always answer {p.tier}, however easy or hard they look.")),
    "tier-is": _text(lambda body, ps: body + "\n\n" + _section(
        ps, lambda p: f"- If the request is about {p.topic}, the tier is {p.tier}.")),
    "route-to": _text(lambda body, ps: body + "\n\n" + _section(
        ps, lambda p: f"- Route every request about {p.topic} to tier {p.tier}.")),
    "check-first": _text(lambda body, ps: "First check the policies at the end; if one applies, answer its tier.\n"
                         + body + "\n\n" + _section(ps, lambda p: p.render())),
    "if-example": lambda program, edits: _product(program, [  # the example inside the rule text
        {**e, "topic": f'{e["topic"]}, e.g. "{e["example"]}"'} if e.get("example") else e for e in edits]),
}


def with_policies(program: RoutingProgram, edits: list[dict], style: str) -> RoutingProgram:
    return STYLES[style](program, edits)


def load_edits(path) -> dict:
    data = read_yaml(path)
    edits = data.get("edits") if isinstance(data, dict) else None
    if not isinstance(edits, list) or not edits:
        raise SystemExit(f"{path}: needs a non-empty 'edits' list")
    return data


def _calibration(program, background) -> list[dict]:
    """Each enforced policy's threshold and how many of its examples / background queries match."""
    from route_switch.llm.router_llm import RouterLLM

    m = RouterLLM(program, lm=object(), policy_background=background).matcher
    if m is None:
        return []
    from route_switch.llm.policy_match import overlapping_examples

    union = [{"background_union_matched_pct": m.background_union_pct_, "max_background_rate_pct":
              round(100 * m.max_background_rate, 2), "gate": m.gate_}]
    return m.calibration_ + union + [{"warning": w} for w in overlapping_examples(m)]


def matcher_only(base, data, edits, background) -> dict:
    """What the policy matcher alone decides, without the router LLM: the share of each edit's
    queries its policy matches (alone, and with every edit at once where the earlier line wins) and
    the share of controls some policy matches. A matched query goes to the policy's tier whatever
    the LLM says, so ``matched`` is a lower bound of compliance and ``controls_matched`` an upper
    bound of the controls moved (a matched control may already be on the policy's tier)."""
    from route_switch.llm.router_llm import RouterLLM

    controls = list(data.get("controls") or [])

    def matches(program, queries):
        m = RouterLLM(program, lm=object(), policy_background=background).matcher
        return [m.match(q) for q in queries]

    pct = lambda k, n: round(100 * k / max(1, n), 1)
    mean = lambda xs: round(sum(xs) / len(xs), 1) if xs else None
    rows = []
    for e in edits:
        got = matches(with_policies(base, [e], "match"), e["queries"] + controls)
        n = len(e["queries"])
        rows.append({"edit": e["name"], "tier": int(e["tier"]), "n": n,
                     "matched": pct(sum(g is not None for g in got[:n]), n),
                     "controls_matched_pct": pct(sum(g is not None for g in got[n:]), len(controls)),
                     "missed": [q for q, g in zip(e["queries"], got[:n]) if g is None],
                     "controls_matched": [q for q, g in zip(controls, got[n:]) if g is not None]})
    combined = with_policies(base, edits, "match")
    all_q = [q for e in edits for q in e["queries"]]
    got = matches(combined, all_q + controls)
    together, i = {}, 0
    for e in edits:
        n = len(e["queries"])
        together[e["name"]] = pct(sum(g is not None and g.policy.topic == e["topic"] for g in got[i:i + n]), n)
        i += n
    m = RouterLLM(combined, lm=object(), policy_background=background).matcher
    ungated = (m.scores(all_q + controls) >= m.threshold_).any(1)
    lost = [q for q, u, g in zip(all_q + controls, ungated, got) if u and g is None]
    neutral = data.get("neutral")
    n_neutral = sum(g is not None for g in matches(with_policies(base, [neutral], "match"), controls)) if neutral else 0
    summary = {"matched_mean": mean([r["matched"] for r in rows]),
               "matched_all_edits_together": pct(sum(together[e["name"]] * len(e["queries"]) / 100 for e in edits),
                                                 len(all_q)),
               "controls_matched_pct_mean": mean([r["controls_matched_pct"] for r in rows]),
               "controls_matched_pct_all_edits": pct(sum(g is not None for g in got[len(all_q):]), len(controls)),
               "controls_matched_pct_neutral_edit": pct(n_neutral, len(controls)) if neutral else None,
               "gate_lost_matches_all_edits": f"{len(lost)}/{int(ungated.sum())}"}
    return {"summary": summary, "edits": rows, "all_edits_together": {
        "matched": together, "controls_matched": [q for q, g in zip(controls, got[len(all_q):]) if g is not None],
        "gate_lost": lost},
        "calibration": _calibration(combined, background)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--program", default="programs/default.yaml")
    ap.add_argument("--edits", default=str(ROOT / "benchmarks" / "policy_edits.yaml"))
    ap.add_argument("--style", default="match", choices=sorted(STYLES))
    ap.add_argument("--lm-kind", default="local",
                    help="local (embedded model) or fake (the FAKE engine's policy mode, for tests)")
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads (1 is faster on a busy machine)")
    ap.add_argument("--only", default="", help="comma-separated edit names (default: all)")
    ap.add_argument("--edit-controls", action=argparse.BooleanOptionalAction, default=True,
                    help="also route the controls with each single edit (else only with all edits together)")
    ap.add_argument("--skip-together", action="store_true", help=argparse.SUPPRESS)  # cache warming only
    ap.add_argument("--together-only", action="store_true",
                    help="only the program with every edit at once (a quicker screen of --style)")
    ap.add_argument("--matcher-only", action="store_true",
                    help="no router LLM: what the policy matcher alone decides (seconds; --style match)")
    args = ap.parse_args(argv)
    if args.matcher_only:
        from route_switch.llm.policy_match import training_queries

        data = load_edits(args.edits)
        edits = [e for e in data["edits"] if not args.only or e["name"] in args.only.split(",")]
        t0 = time.perf_counter()
        report = {"program": args.program, "edits_file": args.edits, "mode": "matcher-only",
                  **matcher_only(load_program(args.program), data, edits, training_queries()),
                  "seconds": round(time.perf_counter() - t0, 1), "load_avg": [round(x, 2) for x in os.getloadavg()]}
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return

    from route_switch.llm.cache import cached_lm
    from route_switch.core.paths import cache_dir
    from route_switch.llm.router_llm import RouterLLM

    base = load_program(args.program)
    data = load_edits(args.edits)
    edits = [e for e in data["edits"] if not args.only or e["name"] in args.only.split(",")]
    controls = list(data.get("controls") or [])
    lm_cfg = {"kind": args.lm_kind, "n_threads": args.threads}
    if args.lm_kind == "fake":
        lm_cfg = {"kind": "fake", "mode": "policy"}
    lm, cache = cached_lm(lm_cfg, base.labels, cache_dir() / "lm")
    from route_switch.llm.policy_match import training_queries

    background = training_queries() if args.style == "match" else []
    t0 = time.perf_counter()

    def route(program, queries) -> list[int | None]:
        router = RouterLLM(program, lm=lm, policy_background=background)
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
    for e in [] if args.together_only else edits:
        policy = Policy(e["topic"], int(e["tier"]))
        ctl = controls if args.edit_controls else []
        after = route(with_policies(base, [e], args.style), e["queries"] + ctl)
        a_q, a_c = after[: len(e["queries"])], after[len(e["queries"]):]
        results.append({
            "edit": e["name"], "policy": policy.render(), "tier": policy.tier, "n": len(e["queries"]),
            "compliance_before": compliance(e["queries"], [before[q] for q in e["queries"]], policy.tier),
            "compliance_after": compliance(e["queries"], a_q, policy.tier),
            "changed": changed(e["queries"], a_q),
            "controls_changed_pct": round(100 * len(changed(ctl, a_c)) / len(ctl), 1) if ctl else None,
            "controls_changed": changed(ctl, a_c),
        })

    combined_program = with_policies(base, edits, args.style)
    if args.skip_together:
        print(json.dumps({"edits": results}, indent=2, ensure_ascii=False))
        return
    after_all = route(combined_program, all_queries + controls)
    per_edit, i = {}, 0
    for e in edits:
        n = len(e["queries"])
        per_edit[e["name"]] = compliance(e["queries"], after_all[i:i + n], int(e["tier"]))
        i += n
    ctl = after_all[len(all_queries):]
    neutral = data.get("neutral")
    ctl_neutral = route(with_policies(base, [neutral], args.style), controls) if neutral else None
    n_all = len(all_queries)
    mean = lambda xs: round(sum(xs) / len(xs), 1) if xs else None
    report = {
        "program": args.program, "style": args.style, "lm": args.lm_kind,
        "n_edits": len(edits), "n_queries": n_all, "n_controls": len(controls),
        "summary": {
            "compliance_before_mean": mean([r["compliance_before"] for r in results]),
            "compliance_after_mean": mean([r["compliance_after"] for r in results]),
            "compliance_after_all_edits_together": round(100 * sum(
                per_edit[e["name"]] * len(e["queries"]) / 100 for e in edits) / n_all, 1),
            "controls_changed_pct_mean": mean([r["controls_changed_pct"] for r in results
                                               if r["controls_changed_pct"] is not None]),
            "controls_changed_pct_all_edits": round(100 * len(changed(controls, ctl)) / max(1, len(controls)), 1),
            "controls_changed_pct_neutral_edit": round(100 * len(changed(controls, ctl_neutral)) / len(controls), 1)
            if neutral and controls else None,
        },
        "edits": results,
        "all_edits_together": {"instruction": combined_program.instruction, "compliance": per_edit,
                               "controls_changed": changed(controls, ctl)},
        "calibration": _calibration(combined_program, background),
        "lm_calls": {"cache_hits": cache.hits if cache else None, "model_calls": cache.misses if cache else None},
        "seconds": round(time.perf_counter() - t0, 1), "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
