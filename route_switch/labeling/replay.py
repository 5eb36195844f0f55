"""Replay labelling: answer from stored outcomes instead of calling endpoints and a judge.

A replay file is an evalset (long format: ``prompt, model, score, cost_usd``, optional ``task``)
holding each tier's score and cost for many queries, e.g. a benchmark's outcomes. ``replay_label``
looks each query up by its normalised text and writes the same progress records and evalset as
:func:`route_switch.labeling.label.label`, so the weekly job's merge, dedupe, resume and report code
run unchanged. It exists to simulate the weekly job on recorded data (and to test it); a query the
file does not hold is reported as failed, never guessed.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

from route_switch.core.errors import ConfigError, InputError
from route_switch.core.routelog import query_sha256
from route_switch.labeling.label import (_progress_path, _summary, _write_evalset, format_summary, read_progress,
                                         read_queries, tiers_key)


def load_replay(path, models):
    """The replay evalset restricted to ``models`` (tier order); errors name the file and the model."""
    from route_switch.core.evalset import load_evalset

    p = Path(path)
    if not p.is_file():
        raise ConfigError("replay file not found", file=str(p), field="labeling.replay")
    return load_evalset(p, models=list(models))


def replay_label(queries, tiers, *, replay, out_path, dry_run: bool = False, echo=print, **_ignored):
    """Label ``queries`` from the stored outcomes in ``replay`` (a path or a loaded Evalset).

    Same output as :func:`~route_switch.labeling.label.label`: the Evalset written to ``out_path``
    with ``meta["labeling"]`` = the run summary (no endpoint or judge calls).
    """
    from route_switch.core.evalset import normalise_prompt

    tiers = list(tiers)
    if len(tiers) < 2:
        raise ConfigError("labelling needs at least 2 tiers", field="tiers")
    models = [t.model for t in tiers]
    ev = replay if hasattr(replay, "scores") else load_replay(replay, models)
    ev = ev.select_models(models) if list(ev.models) != models else ev
    tasks = ev.queries["task"].astype(str).tolist() if "task" in ev.queries else [""] * len(ev)
    index = {normalise_prompt(p): i for i, p in enumerate(ev.prompts)}
    items = read_queries(queries)
    if not items:
        raise InputError("no queries to label")
    out_path = Path(out_path)
    prog_path = _progress_path(out_path)
    key = tiers_key(tiers)
    done = read_progress(prog_path, key)
    todo = [q for q in items if query_sha256(q["query"]) not in done]
    echo(f"replay labelling {len(todo)} queries ({len(items) - len(todo)} already done) from {ev.source}")
    if dry_run:
        echo("dry run: nothing was labelled")
        return None
    t0, failures, n_new = time.time(), [], 0
    prog_path.parent.mkdir(parents=True, exist_ok=True)
    with open(prog_path, "a", encoding="utf-8") as prog:
        for item in todo:
            i = index.get(normalise_prompt(item["query"]))
            if i is None:
                failures.append({"query": item["query"][:120], "error": "not in the replay file"})
                continue
            rows = [{"tier": t.name, "model": t.model, "in_tokens": None, "out_tokens": None,
                     "cost_usd": float(ev.costs[i, j]), "verdict": "replayed", "score": float(ev.scores[i, j]),
                     "judged_by": "replay"} for j, t in enumerate(tiers)]
            rec = {"qid": query_sha256(item["query"]), "tiers_key": key, "query": item["query"],
                   "task": item["task"] or tasks[i], "gold": None,
                   "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tiers": rows}
            prog.write(json.dumps(rec, ensure_ascii=False) + "\n")
            done[rec["qid"]] = rec
            n_new += 1
        prog.flush()
    recs = [done[query_sha256(q["query"])] for q in items if query_sha256(q["query"]) in done]
    calls = SimpleNamespace(calls=0, hits=0)
    summary = _summary(recs, tiers, n_new, len(items) - len(todo), failures, calls, calls, time.time() - t0)
    summary["replay"] = str(ev.source)
    echo(format_summary(summary))
    if not recs:
        raise InputError(f"no query could be labelled; first error: {failures[0]['error'] if failures else '?'}",
                         file=str(ev.source))
    return _write_evalset(recs, tiers, out_path, summary)
