"""``metrics.json`` of an optimisation run: where the instruction came from, the gate's record,
the candidates, and the held-out figures (LLM alone and fused) of the start and the kept program."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

from route_switch.core.evalset import Evalset
from route_switch.optimization.gate import GateOutcome, per_query
from route_switch.optimization.objective import OBJECTIVE, outcomes
from route_switch.optimization.preparation import Prepared


def run_metrics(run: Prepared, outcome: GateOutcome, start_votes, opt_votes, minutes: float) -> dict:
    """The metrics.json of a run whose gate kept ``outcome.kept`` (votes: on the test sample)."""
    import dspy

    from route_switch.llm.artifacts import instruction_sha256
    from route_switch.llm.cache import lm_identity

    s, start, best, train, fit_ev = run.settings, run.start, outcome.kept, run.train, run.fit
    origin = s.start_origin if best.instruction.strip() == start.instruction.strip() else \
        dict(run.extra).get(best.instruction, "proposed")
    in_shared, rel = shared_path(train)
    ids = demo_ids(best.demos, fit_ev, run.clip) if s.chooses_demos and not s.demo_pool else []
    metrics = {
        "lambda": run.lam, "lambda_source": run.lam_source, "objective": OBJECTIVE, "cost_normaliser": run.unit,
        "evalset": {"name": s.evalset_name, "path": rel, "relative_to": "data root" if in_shared else "",
                    "hash": train.content_hash(), "tiers": list(train.models), "n_train": len(fit_ev),
                    "n_val": len(run.val), "n_gate": len(run.gate), "n_test": len(run.test)},
        "lm": lm_identity(run.lm_cfg), "prompt_lm": lm_identity(run.proposer_cfg), "dspy_version": dspy.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "start_program": start.name, "instruction_origin": origin, "optimizer": s.optimizer,
        "instruction_sha256": instruction_sha256(best.instruction), "gate": outcome.gate,
        "candidates": run.record, "mined_policies": [m.to_dict() | {"example_ids": [str(fit_ev.queries["id"].iloc[r])
                                                                              for r in m.examples]} for m in run.mined],
        "demos": {"from": "pool" if s.demo_pool else ("evalset" if s.chooses_demos and best.demos != start.demos
                                                      else "program"),
                  "ids": ids, "evalset_hash": train.content_hash()},
        "num_candidates": s.num_candidates, "num_trials": s.num_trials, "seed": s.seed,
        "max_query_tokens": run.reader.max_query_tokens, "minutes": minutes,
    }
    metrics.update(held_out(start_votes, opt_votes, run.test, run.lam, run.unit, s.confidence, s.seed))
    if outcome.scorer is not None:
        metrics.update(held_out_fused(outcome.scorer, outcome.fusions, start_votes, opt_votes, run.test,
                                      s.confidence, s.seed))
    return metrics


def shared_path(train: Evalset) -> tuple[bool, str]:
    from route_switch.core.paths import data_dir

    src = Path(train.source)
    in_shared = str(src.resolve()).startswith(str(data_dir().resolve()))
    return in_shared, (str(src.resolve().relative_to(data_dir().resolve())) if in_shared else src.name)


def demo_ids(demos: list[dict], ev: Evalset, clip) -> list[str]:
    """Evalset ids of the demos (matched on the query as the router reads it)."""
    by_text = {clip(p): str(i) for p, i in zip(ev.prompts, ev.queries["id"])}
    return [by_text[d["query"]] for d in demos if d["query"] in by_text]


def held_out_fused(scorer, fusions: dict, start_votes, opt_votes, ev: Evalset, confidence: float, seed: int) -> dict:
    """The fused router's held-out AIQ for the start and the kept program, the estimator's, and the paired gain."""
    from route_switch.optimization.significance import paired_gain

    a, b = scorer.aiq(fusions["start"], ev, start_votes), scorer.aiq(fusions["best"], ev, opt_votes)
    return {"start_fused_aiq": a["fused_aiq"], "optimized_fused_aiq": b["fused_aiq"],
            "estimator_aiq": a["estimator_aiq"], "start_fusion_w": a["fusion_w"], "optimized_fusion_w": b["fusion_w"],
            "held_out_fused_gain": paired_gain(scorer.per_query(fusions["best"], ev, opt_votes),
                                               scorer.per_query(fusions["start"], ev, start_votes),
                                               confidence=confidence, seed=seed)}


def held_out(start_votes, opt_votes, ev: Evalset, lam: float, unit: float, confidence: float, seed: int) -> dict:
    """``start_*`` / ``optimized_*`` figures on the test sample and the paired gain between them."""
    from route_switch.optimization.significance import paired_gain

    a, b = outcomes(start_votes, ev, lam, unit), outcomes(opt_votes, ev, lam, unit)
    out = {}
    for key in ("objective", "label_objective", "quality", "cost_share", "tier_shares", "invalid", "llm_aiq"):
        out[f"start_{key}"], out[f"optimized_{key}"] = a[key], b[key]
    out["line_aiq"] = b["line_aiq"]
    out["held_out_gain"] = paired_gain(per_query(opt_votes, ev, lam, unit), per_query(start_votes, ev, lam, unit),
                                       confidence=confidence, seed=seed)
    return out
