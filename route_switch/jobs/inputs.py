"""The job's inputs: a seeded sample of the period's logged queries, and the merged evalset."""
from __future__ import annotations

import datetime as _dt

import numpy as np

from route_switch.jobs.job_config import Job


def sample_logged_queries(job: Job, now: _dt.datetime | None = None, focus=None) -> tuple[list[str], dict]:
    """Distinct logged query texts of the last period (seeded sample) and counts for the report.

    ``focus``: optional ``texts -> bool mask`` (queries of the groups flagged as drifted last run);
    up to ``job.drift_focus_share`` of the sample is drawn from the masked texts, the rest uniformly.
    """
    from route_switch.core.errors import InputError
    from route_switch.core.routelog import read_route_log

    now = now or _dt.datetime.now(_dt.timezone.utc)
    recs = read_route_log(job.route_log, since=now - _dt.timedelta(days=job.period_days))
    texts = list(dict.fromkeys(r["query"] for r in recs if isinstance(r.get("query"), str) and r["query"].strip()))
    stats = {"logged": len(recs), "with_text": sum(isinstance(r.get("query"), str) for r in recs), "distinct": len(texts)}
    if recs and not texts:
        raise InputError("the route log holds only query hashes (privacy: hash): nothing to label. Set "
                         "route_log.privacy: full in the router config", file=str(job.route_log), field="query")
    rng = np.random.default_rng(job.seed)
    if len(texts) > job.sample_size:
        mask = np.asarray(focus(texts), bool) if focus is not None and job.drift_focus_share > 0 else None
        if mask is not None and mask.any():
            inside, outside = np.flatnonzero(mask), np.flatnonzero(~mask)
            k_in = min(len(inside), int(round(job.drift_focus_share * job.sample_size)))
            k_out = min(len(outside), job.sample_size - k_in)
            k_in = min(len(inside), job.sample_size - k_out)  # too few outside: fill from the groups
            pick = np.concatenate([rng.choice(inside, k_in, replace=False), rng.choice(outside, k_out, replace=False)])
            stats["focus"] = {"in_drifted_groups": int(mask.sum()), "sampled_from_groups": int(k_in),
                              "share": job.drift_focus_share}
        else:
            pick = rng.choice(len(texts), job.sample_size, replace=False)
        texts = [texts[i] for i in sorted(pick)]
    stats["sampled"] = len(texts)
    return texts, stats


def merge_evalsets(new, old):
    """New labels first (they win on duplicate prompts), then the existing evalset; deduped."""
    import pandas as pd

    from route_switch.core.evalset import long_to_evalset, validate_long

    parts = [e.to_long() for e in (new, old) if e is not None]
    df = validate_long(pd.concat(parts, ignore_index=True), file="<merged>")
    models = (new or old).models
    return long_to_evalset(df, models=models, file=str(old.source if old is not None else new.source))

