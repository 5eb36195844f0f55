"""The job's inputs: a seeded sample of the period's logged queries, and the merged evalset."""
from __future__ import annotations

import datetime as _dt

import numpy as np

from route_switch.jobs.job_config import Job


def sample_logged_queries(job: Job, now: _dt.datetime | None = None) -> tuple[list[str], dict]:
    """Distinct logged query texts of the last period (seeded sample) and counts for the report."""
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
        texts = [texts[i] for i in sorted(rng.choice(len(texts), job.sample_size, replace=False))]
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

