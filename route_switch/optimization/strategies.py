"""One search per optimiser, same slices and objective: each takes the prepared run and the
student module and returns the compiled module."""
from __future__ import annotations

import contextlib
import logging
import os

import numpy as np

from route_switch.optimization.preparation import Prepared


def search_mipro(run: Prepared, student):
    """MIPROv2: instruction × demo sets (the evalset's, a demo pool people wrote, or none)."""
    import dspy

    from route_switch.optimization.mipro import compile_mipro, demo_sets_from, make_metric, to_examples

    s = run.settings
    trainset = to_examples(run.fit, run.clip)
    demo_sets = None
    if s.demo_pool:
        trainset = [dspy.Example(query=d["query"], tier=str(d["tier"])).with_inputs("query") for d in s.demo_pool]
    elif s.data_demos:
        demo_sets = demo_sets_from(run.fit, run.clip, run.start.demos, s.num_candidates + 2, seed=s.seed,
                                   mined=run.mined)
    return compile_mipro(run.extra, run.start.tiers, run.record, make_metric(run.lam, run.unit, run.bar),
                         run.prompt_lm, run.task_lm, student, trainset, to_examples(run.val, run.clip),
                         s.num_candidates, s.num_trials, s.seed, s.chooses_demos, demo_sets)


def search_gepa(run: Prepared, student):
    """GEPA: the instruction only, reflecting on feedback; its budget = MIPROv2's routing calls."""
    from route_switch.optimization.gepa import compile_gepa, feedback_metric
    from route_switch.optimization.mipro import to_examples

    s = run.settings
    valset = to_examples(run.val, run.clip)
    reflect_on = run.fit.subset(np.arange(min(150, len(run.fit))))  # GEPA reads feedback on these
    return compile_gepa(student, to_examples(reflect_on, run.clip), valset,
                        metric=feedback_metric(run.start, run.lam, run.unit, run.bar), reflection_lm=run.prompt_lm,
                        seed=s.seed, max_metric_calls=s.num_trials * len(run.val) + len(run.val),
                        failure_score=-run.lam)


SEARCHES = {"mipro": search_mipro, "gepa": search_gepa}


class _DropUnusedFieldWarnings(logging.Filter):
    """DSPy's instruction proposer hands its predictor every field, also those a switched-off
    proposer part does not read, and DSPy warns about it once per call: noise in cron logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Input contains fields not in signature")


@contextlib.contextmanager
def quiet_dspy():
    """Silence DSPy's own output during a search: its evaluation bars write to stdout (they would
    corrupt ``--json`` output and pipes, and ignore ``--quiet``); our own bar reports progress."""
    drop = _DropUnusedFieldWarnings()
    log = logging.getLogger("dspy.predict.predict")
    log.addFilter(drop)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            yield
    finally:
        log.removeFilter(drop)
