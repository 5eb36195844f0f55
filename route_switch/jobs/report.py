"""The job's markdown report (and the same data as JSON) in the job's ``report_dir``."""
from __future__ import annotations

import json
from pathlib import Path

from route_switch.jobs.job_config import Job


def _fmt(d: dict | None) -> str:
    if d is None:
        return "n/a | n/a | n/a | n/a"
    return f"{d['objective']:.4f} | {d['quality']:.3f} | {d['cost_share']:.3f} | {', '.join(f'{s:.0%}' for s in d['tier_shares'])}"


def _misroute_md(m: dict) -> list[str]:
    cur = "n/a" if m["current"] is None else m["current"]
    lines = [f"Misroutes on the held-out slice (a cheaper tier would have scored higher): current {cur}, "
             f"candidate {m['candidate']}."]
    for kind, title in (("fixed", "fixed by the candidate"), ("new", "new with the candidate")):
        if m[kind]:
            lines += ["", f"{title}:"]
            lines += [f"- `{x['id']}` {x['prompt'][:100]!r}: chose {x['chosen']} ({x['chosen_score']:.2f}), "
                      f"{x['cheapest_success']} would score {x['its_score']:.2f}" for x in m[kind]]
    return lines


def write_report(job: Job, res: dict, stamp: str) -> Path:
    """Markdown report (and the same data as JSON) in ``report_dir``."""
    from route_switch.core.files import atomic_write_text
    from route_switch.jobs.drift import format_drift

    L = [f"# Re-optimisation `{job.name}` — {stamp} UTC", "", f"- job: `{job.file}`", f"- status: **{res['status']}**"]
    if res.get("error"):
        L += [f"- error: `{res['error'][:500]}`", "- the current artifact, estimator and evalset were left untouched"]
    pr = res.get("promoted", {})
    L += [f"- promoted: router program {'yes' if pr.get('program') else 'no'}, "
          f"estimator {'yes' if pr.get('estimator') else 'no'}"]
    if res.get("verdict"):
        L += [f"- verdict: {res['verdict']}"]
    if "route_log" in res:
        rl = res["route_log"]
        L += [f"- route log: {rl['logged']} decisions in {job.period_days:g} days, {rl['with_text']} with text, "
              f"{rl['distinct']} distinct, {rl['sampled']} sampled, {rl.get('already_labelled', 0)} already labelled"]
        if rl.get("focus"):
            fo = rl["focus"]
            L += [f"- drift focus: {fo['sampled_from_groups']} of the sample from last run's drifted groups "
                  f"({fo['in_drifted_groups']} logged queries matched them; focus_share {fo['share']})"]
    if "evalset" in res:
        e = res["evalset"]
        L += [f"- evalset: {e['existing']} existing + {e['new']} new = {e['merged']} queries "
              f"({e.get('train', '?')} train / {e.get('holdout', '?')} held out)"]
    if "labeling" in res:
        lb = res["labeling"]
        L += [f"- labelling: {lb.get('labelled_this_run')} labelled, {lb.get('failed')} failed, "
              f"{lb.get('tier_calls')} endpoint calls, {lb.get('cache_hits')} cache hits, {lb.get('wall_s')} s"]
        if "judge_agreement" in lb:
            L += [f"- judge agreement with exact match: {lb['judge_agreement']['agreement']:.1%}"]
    head = ["| version | objective | quality | cost share | tier shares |", "|---|---|---|---|---|"]
    for key, title in (("program", "Router program (MIPROv2)"), ("estimator", "Estimator (refit)")):
        if key not in res:
            continue
        d = res[key]
        L += ["", f"## {title}", "", f"Gate: {d['gate']} → {'**promote**' if d['pass'] else '**keep current**'}", ""]
        L += head + [f"| current | {_fmt(d['current'])} |", f"| candidate | {_fmt(d['candidate'])} |", ""]
        if key == "program":
            L += ["Instruction diff (current → candidate):", "", "```diff", d["diff"], "```", ""]
        L += _misroute_md(d["misroutes"])
    if "drift" in res:
        from route_switch.jobs.drift_groups import format_groups

        L += ["", "## Drift", "", format_drift(res["drift"])] + format_groups(res["drift"].get("groups", []))
    L += ["", "## Timings (s, cumulative)", "", ", ".join(f"{k} {v}" for k, v in res.get("timings_s", {}).items())]
    job.report_dir.mkdir(parents=True, exist_ok=True)
    out = job.report_dir / f"reoptimize-{job.name}-{stamp}.md"
    atomic_write_text(out, "\n".join(L) + "\n")
    atomic_write_text(out.with_suffix(".json"), json.dumps(res, indent=1, default=str) + "\n")
    return out
