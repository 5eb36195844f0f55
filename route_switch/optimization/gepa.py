"""GEPA (reflective prompt evolution, ``dspy.GEPA``) for a routing program, beside MIPROv2.

GEPA reads textual feedback. :func:`feedback_metric` gives, for every routed training query,
the ``quality − λ·cost`` score that MIPROv2 optimises plus a sentence a reflection model can act
on: which tier was chosen, what it scored and cost, and which tier would have been right (the
one with the best objective on that query) at what cost. :func:`compile_gepa` runs GEPA on the
program's instruction only (the demos are the program's own) within a metric-call budget and
an optional wall-clock limit.
"""
from __future__ import annotations

import logging
import re

import numpy as np

from route_switch.core.tiers import to_tier

log = logging.getLogger("route_switch")


def _tier_name(program, i: int) -> str:
    return f"tier {to_tier(i)} ({program.tiers[i]['name']})"


def explain(program, tier_index: int | None, scores, costs, lam: float, unit: float) -> tuple[float, str]:
    """(objective, feedback) for one query routed to ``tier_index`` (0-based; None = no valid tier).

    Costs are stated as a share of ``unit`` (the top tier's mean cost per query), the unit of λ.
    """
    from route_switch.optimization.objective import objective

    scores, costs = np.asarray(scores, float), np.asarray(costs, float)
    objs = [objective(k, scores, costs, lam, unit) for k in range(len(scores))]
    best = int(np.argmax(objs))  # ties go to the cheapest tier (argmax keeps the first)
    right = (f"The right choice was {_tier_name(program, best)}: quality {scores[best]:.2f} at "
             f"{costs[best] / unit:.0%} of the top tier's mean cost (objective {objs[best]:.2f}).")
    if tier_index is None:
        return objective(None, scores, costs, lam, unit), f"The answer was not a valid tier label. {right}"
    got = objs[tier_index]
    chose = (f"You chose {_tier_name(program, tier_index)}: quality {scores[tier_index]:.2f} at "
             f"{costs[tier_index] / unit:.0%} of the top tier's mean cost (objective {got:.2f}).")
    if tier_index == best or got >= objs[best] - 1e-9:
        return got, f"{chose} Correct: no cheaper tier does as well on this request."
    if best < tier_index:
        hint = "A cheaper tier answers this kind of request well enough; do not pay for a larger one."
    else:
        hint = "The cheaper tier fails on this kind of request; it needs a larger tier."
    return got, f"{chose} {right} {hint}"


def feedback_metric(program, lam: float, unit: float, progress=None):
    """A GEPA metric ``(gold, pred, trace, pred_name, pred_trace) -> dspy.Prediction(score, feedback)``.

    The score is the optimiser's objective of the answered tier distribution (as for MIPROv2);
    the feedback is about its most likely tier.
    """
    import dspy

    from route_switch.optimization.objective import expected_objective

    labels = program.labels

    def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        tier = str(getattr(pred, "tier", "")).strip()
        idx = labels.index(tier) if tier in labels else None
        if progress is not None:
            progress.update(1)
        _, feedback = explain(program, idx, gold.scores, gold.costs, lam, unit)
        probs = getattr(pred, "probs", None)
        score = expected_objective(probs, np.asarray(gold.scores, float), np.asarray(gold.costs, float), lam, unit)
        return dspy.Prediction(score=score, feedback=feedback)

    return metric


RULE_DOC = ("You improve a router that sends each user request to the cheapest model tier that answers it well. "
            "Below are the tiers and how the router handled some requests. Write ONE new routing rule, one sentence "
            "of the form 'Send <kind of request> to tier <number>.', that fixes these mistakes. Describe the kind of "
            "request in general words. Do not copy or answer the requests.")


def _first_sentence(text: str, limit: int = 240) -> str:
    line = next((x.strip(" -*•\t") for x in text.splitlines() if x.strip(" -*•\t")), "")
    return line[:limit].strip()


class RouterInstructionProposer:
    """A reflection step that small local models can follow: learn one rule, append it.

    DSPy's default proposer asks the reflection model to rewrite the whole instruction from every
    request in full; the embedded 0.5B model then copies the instruction verbatim or starts
    solving the requests. This one shows the first ``max_query_chars`` characters of each request
    with its feedback and asks for one new rule, which is appended to the instruction as a bullet,
    so the instruction grows by readable lines that GEPA keeps only when they score better.
    """

    def __init__(self, legend: str = "", max_query_chars: int = 160):
        self.legend, self.max_query_chars = legend, max_query_chars

    def __call__(self, candidate: dict, reflective_dataset: dict, components_to_update: list) -> dict:
        import dspy

        sig = dspy.Signature("tiers: str, routing_results: str -> new_rule: str", RULE_DOC)
        out = {}
        for name in components_to_update:
            lines = []
            for rec in reflective_dataset.get(name, []):
                inputs = rec.get("Inputs") or {}
                q = " ".join(str(inputs.get("query", "")).split())
                q = q if len(q) <= self.max_query_chars else q[: self.max_query_chars] + "..."
                lines.append(f"- Request: {q}\n  {rec.get('Feedback', '')}")
            with dspy.context(adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
                pred = dspy.Predict(sig)(tiers=self.legend or "tier 1 = cheapest ... highest = largest",
                                         routing_results="\n".join(lines))
            rule = _first_sentence(str(getattr(pred, "new_rule", "") or ""))
            current = candidate[name].rstrip()
            ok = self.usable(rule, current, reflective_dataset.get(name, []))
            log.info("GEPA reflection proposed rule %r (%s)", rule, "appended" if ok else "rejected")
            out[name] = f"{current}\n- {rule}" if ok else current
        return out

    @staticmethod
    def usable(rule: str, current: str, records) -> bool:
        """A rule names a tier, is new, and is not a pasted request (small models often paste one)."""
        if not rule or rule in current or not re.search(r"\btier\s*\d", rule, re.I):
            return False
        low = " ".join(rule.lower().split())
        for rec in records:
            q = " ".join(str((rec.get("Inputs") or {}).get("query", "")).lower().split())
            if len(q) >= 30 and any(q[i:i + 30] in low for i in range(0, len(q) - 29, 10)):
                return False
            fb = " ".join(str(rec.get("Feedback", "")).lower().split())
            if len(fb) >= 30 and any(fb[i:i + 30] in low for i in range(0, len(fb) - 29, 10)):
                return False
        return True


# Small reflection models tend to copy the current instruction verbatim; ask for a revision that
# states what the feedback taught (which requests the cheap tier handles, which need a larger one).
REFLECTION_HINT = ("Do not copy the current instruction. Write a revised routing instruction of at most 12 lines "
                   "that adds concrete rules learned from the feedback: which kinds of requests the cheaper tiers "
                   "answered well, and which kinds really needed a larger tier. Keep the tier numbers.")


def compile_gepa(student, trainset, valset, *, metric, reflection_lm, seed: int = 0, max_metric_calls: int = 200,
                 failure_score: float = 0.0, max_seconds: float | None = None, log_dir: str | None = None,
                 proposer: str = "compact"):
    """Optimise ``student``'s instruction with ``dspy.GEPA``; return the compiled module.

    ``max_metric_calls``: GEPA's budget of routing calls (train minibatches and the
    validation set); ``max_seconds`` stops the search early (the best candidate so far is kept).
    ``failure_score`` is the score of a call that raised (use ``−λ``, as for an invalid tier).
    ``proposer``: ``compact`` (:class:`RouterInstructionProposer`: one learned rule per step) or ``dspy`` (DSPy's default
    reflection prompt, with :data:`REFLECTION_HINT`).
    """
    import dspy
    from dspy.adapters import ChatAdapter
    from dspy.teleprompt.gepa.instruction_proposal import InstructionProposer

    gepa_kwargs = {}
    if max_seconds:
        from gepa.utils.stop_condition import TimeoutStopCondition

        gepa_kwargs["stop_callbacks"] = [TimeoutStopCondition(max_seconds)]
    if proposer == "compact":
        legend = ""
        for _name, pred in student.named_predictors():  # the tier legend lives in the output field's description
            legend = next((str((f.json_schema_extra or {}).get("desc", "")) for f in pred.signature.output_fields.values()), "")
        proposal = RouterInstructionProposer(legend)
    else:  # ChatAdapter: the local engine pre-fills a one-field answer layout, which a 0.5B model follows
        proposal = InstructionProposer(additional_instructions=REFLECTION_HINT,
                                       adapter=ChatAdapter(use_json_adapter_fallback=False))
    opt = dspy.GEPA(metric=metric, max_metric_calls=int(max_metric_calls), reflection_lm=reflection_lm,
                    instruction_proposer=proposal,
                    reflection_minibatch_size=3, candidate_selection_strategy="pareto", use_merge=False,
                    num_threads=1, failure_score=failure_score, perfect_score=1.0, skip_perfect_score=False,
                    seed=seed, log_dir=log_dir, gepa_kwargs=gepa_kwargs)
    return opt.compile(student, trainset=trainset, valset=valset)
