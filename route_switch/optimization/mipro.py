"""MIPROv2 for a routing program: its examples, its metric, its demo-set candidates, and a
MIPROv2 whose instruction candidates are filtered for readability and extended with ours."""
from __future__ import annotations

import numpy as np

from route_switch.core.evalset import Evalset
from route_switch.core.tiers import to_tier
from route_switch.optimization.objective import expected_objective


def to_examples(ev: Evalset, clip) -> list:
    """DSPy examples: the query as the router reads it, its scores and costs, and the needed tier as label."""
    import dspy

    from route_switch.optimization.grounding import needed_tier_index

    need = [to_tier(k) for k in needed_tier_index(ev.scores, ev.costs)]
    return [dspy.Example(query=clip(p), scores=ev.scores[i].tolist(), costs=ev.costs[i].tolist(),
                         tier=str(need[i])).with_inputs("query") for i, p in enumerate(ev.prompts)]


def make_metric(lam: float, unit: float, progress=None):
    def metric(example, pred, trace=None):
        if example.get("scores") is None:  # a demo-pool example: nothing to score, never bootstrapped
            return 0.0
        if progress is not None:
            progress.update(1)
        return expected_objective(getattr(pred, "probs", None), np.asarray(example.scores),
                                  np.asarray(example.costs), lam, unit)

    return metric


def _routing_mipro(candidates: list[tuple[str, str]], tiers: list[dict], record: list, demo_sets=None):
    """MIPROv2 whose instruction candidates are filtered for readability and extended with
    ``candidates``, and whose demo-set candidates are ``demo_sets`` (when given)."""
    import dspy

    from route_switch.optimization.grounding import describes_tiers, strip_preamble

    class RoutingMIPROv2(dspy.MIPROv2):
        def _bootstrap_fewshot_examples(self, program, *args, **kwargs):
            if demo_sets is None:
                return super()._bootstrap_fewshot_examples(program, *args, **kwargs)
            return {i: [list(s) for s in demo_sets] for i, _ in enumerate(program.predictors())}

        def _propose_instructions(self, program, *args, **kwargs):
            proposed = super()._propose_instructions(program, *args, **kwargs)
            for i, texts in proposed.items():
                keep = [texts[0]]  # the starting instruction
                for text in texts[1:]:
                    text = strip_preamble(text)  # bigger proposers open with "here is a proposed instruction:"
                    ok, why = describes_tiers(text, tiers)
                    record.append({"origin": "proposed", "accepted": ok, "why_not": why,
                                   "text": text.strip()[:300]})
                    if ok and text not in keep:
                        keep.append(text)
                for text, origin in candidates:
                    record.append({"origin": origin, "accepted": True, "why_not": "", "text": text.strip()[:300]})
                    keep.append(text)
                proposed[i] = keep
            return proposed

    return RoutingMIPROv2


def demo_sets_from(ev: Evalset, clip, start_demos: list[dict], n_sets: int, per_tier: int = 1,
                   seed: int = 0, mined=()) -> list[list]:
    """Demo-set candidates for the search: the program's own demos; with ``mined`` policies, the most
    typical query of each (labelled with the policy's tier: what the group needs, not what one
    noisy query scored), alone and after the program's demos; then sets of ``per_tier`` labelled
    training queries per tier, up to ``n_sets`` sets in all.

    Clear cases only: a query no tier answered (its "needed tier" is tier 1 only because all
    failed) would teach the wrong thing. Equal numbers per tier stop the search from copying the
    split's majority tier (the failure of unbalanced demo sets: 92% tier-1 labels).
    """
    import dspy

    from route_switch.optimization.grounding import needed_tier_index

    need = needed_tier_index(ev.scores, ev.costs)
    clear = ev.scores.max(axis=1) >= 0.5
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(clear & (need == t))).tolist() for t in range(ev.scores.shape[1])]
    sets = [[dspy.Example(query=d["query"], tier=str(d["tier"])).with_inputs("query") for d in start_demos]]
    typical = [dspy.Example(query=clip(ev.prompts[m.examples[0]]), tier=str(m.policy.tier)).with_inputs("query")
               for m in list(mined)[:2 * ev.scores.shape[1]] if m.examples]
    if typical:
        sets += [typical, sets[0] + typical]
    while len(sets) < n_sets:
        rows = [pool.pop() for pool in pools for _ in range(per_tier) if pool]
        if not rows:
            break
        rows = rng.permutation(rows).tolist()  # tiers interleaved, not in label order
        sets.append(to_examples(ev.subset(rows), clip))
    return sets


def compile_mipro(extra, tiers, record, metric, prompt_lm, task_lm, student, trainset, valset,
                   num_candidates, num_trials, seed, choose_demos, demo_sets):
    """MIPROv2 (the instruction × demo search) of ``student`` on ``trainset`` / ``valset``."""
    opt = _routing_mipro(extra, tiers, record, demo_sets)(
        metric=metric, prompt_model=prompt_lm, task_model=task_lm, auto=None, num_candidates=num_candidates,
        # >= 1 whenever demos are chosen from a pool: MIPROv2 draws a bootstrap size in [1, max];
        # pool examples score 0, so none is ever bootstrapped from them
        max_bootstrapped_demos=1 if choose_demos else 0, max_labeled_demos=4 if choose_demos else 0,
        num_threads=1, seed=seed, verbose=False)
    return opt.compile(student, trainset=trainset, valset=valset, num_trials=num_trials,
                       minibatch=len(valset) > 35, minibatch_size=min(35, len(valset)),
                       program_aware_proposer=False, data_aware_proposer=False, fewshot_aware_proposer=False)
