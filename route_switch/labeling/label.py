"""Label queries: ask every tier's model, let the judge rate each answer against the top tier's.

The result is an evalset in the long format (``id, prompt, task, split, model, score, cost_usd``),
ready for ``optimize`` / ``evaluate`` / ``fit``. The top tier scores 1.0 by definition; an answer
identical to it (same words) is ``equivalent`` without a judge call; every other answer gets the
judge's verdict score. Costs are the endpoints' reported ``usage`` x the tier's prices.

Resumable: each finished query is appended to ``<out>.progress.jsonl`` (keyed by the query's
SHA-256) and skipped by a re-run; model and judge calls are cached on disk, so an interrupted
query is redone from the cache. A query whose calls fail (after retries) or whose verdict is not
valid is reported and left unlabelled (never guessed); a re-run tries it again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from pathlib import Path

from route_switch.core.errors import ConfigError, InputError
from route_switch.core.tokens import estimate_tokens
from route_switch.core.routelog import query_sha256

log = logging.getLogger("route_switch")

JUDGE_PROMPT_TOKENS = 450  # instruction + demos + layout of one judge call, roughly


# ----------------------------------------------------------------------------- inputs
def read_queries(source, since=None) -> list[dict]:
    """Queries ``[{query, task, answer}]`` from a list (str or dicts), a JSONL/CSV/parquet file with a
    ``query`` or ``prompt`` column (optional ``task``, ``answer``), or a route log (needs privacy=full)."""
    if isinstance(source, (list, tuple)):
        rows = [{"query": q} if isinstance(q, str) else dict(q) for q in source]
        return _clean(rows, "<list>")
    path = Path(source)
    if _is_route_log(path):
        from route_switch.core.routelog import read_route_log

        recs = read_route_log(path, since=since)
        rows = [{"query": r["query"]} for r in recs if isinstance(r.get("query"), str)]
        if recs and not rows:
            raise InputError("this route log holds only query hashes (privacy: hash), no query text to "
                             "label; set route_log.privacy: full in the router config to label logged queries",
                             file=str(path), field="query")
        if len(rows) < len(recs):
            log.warning("%s: %d of %d entries have no query text (privacy: hash) and are skipped",
                        path, len(recs) - len(rows), len(recs))
        return _clean(rows, str(path))
    from route_switch.core.evalset import read_table

    df = read_table(path)
    col = "query" if "query" in df.columns else "prompt" if "prompt" in df.columns else None
    if col is None:
        raise InputError(f"needs a 'query' or 'prompt' column (found {list(df.columns)[:10]})", file=str(path),
                         field="query")
    df = df.rename(columns={col: "query"})
    keep = [c for c in ("query", "task", "answer") if c in df.columns]
    return _clean(df[keep].to_dict("records"), str(path))


def _is_route_log(path: Path) -> bool:
    if not (path.name.endswith(".jsonl") or re.search(r"\.jsonl\.\d+$", path.name)):
        return False
    from route_switch.core.routelog import route_log_files

    for f in route_log_files(path) or [path]:
        if f.exists():
            with open(f, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line.strip():
                        return '"query_sha256"' in line
    return False


def _clean(rows: list[dict], file: str) -> list[dict]:
    out, seen = [], set()
    for i, r in enumerate(rows, 1):
        q = r.get("query")
        if not isinstance(q, str) or not q.strip():
            raise InputError(f"must be a non-empty string, got {q!r}", file=file, row=i, field="query")
        h = query_sha256(q)
        if h in seen:
            continue
        seen.add(h)
        ans = r.get("answer")
        if isinstance(ans, float):  # a CSV column with blanks is read as floats: 2.0 means "2"
            ans = None if ans != ans else str(int(ans)) if ans.is_integer() else str(ans)
        ans = None if ans is None else str(ans)
        task = r.get("task")
        out.append({"query": q, "task": "" if task is None or task != task else str(task), "answer": ans})
    return out


# ----------------------------------------------------------------------------- estimate
def estimate(queries: list[dict], tiers, *, max_tokens: int = 512, assumed_out_tokens: int | None = None,
             judge_lm_cfg: dict | None = None) -> dict:
    """Calls and cost before spending: prompt length (~4 chars/token) x prices, an assumed answer length."""
    out = int(assumed_out_tokens or min(max_tokens, 256))
    n = len(queries)
    cost = sum(t.cost(estimate_tokens(q["query"]) + 8, out) or 0.0 for q in queries for t in tiers)
    jc = dict(judge_lm_cfg or {})
    n_judge = n * (len(tiers) - 1)
    judge_cost = None
    if jc.get("price_in") is not None and jc.get("price_out") is not None:
        judge_cost = sum((JUDGE_PROMPT_TOKENS + estimate_tokens(q["query"]) + 2 * out) * jc["price_in"] + 4 * jc["price_out"]
                         for q in queries) * (len(tiers) - 1) / 1e6
    return {"queries": n, "tier_calls": n * len(tiers), "judge_calls_max": n_judge, "assumed_out_tokens": out,
            "tier_cost_usd": cost, "judge_cost_usd": judge_cost}


# ----------------------------------------------------------------------------- scoring helpers
def _words(text: str) -> list[str]:
    return re.findall(r"\w+", str(text).casefold())


def exact_match(text: str, gold: str) -> bool:
    """The gold answer is the whole answer or appears in it as a whole word/number sequence."""
    g, t = _words(gold), _words(text)
    if not g:
        return False
    if g == t:
        return True
    return any(t[i:i + len(g)] == g for i in range(len(t) - len(g) + 1))


def _progress_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".progress.jsonl")


def tiers_key(tiers) -> str:
    """Identifies the tier set: progress made with other tiers is not reused."""
    return hashlib.sha256(json.dumps([[t.name, t.model, t.api_base, t.upstream_model] for t in tiers])
                          .encode()).hexdigest()[:12]


def read_progress(path: Path, key: str | None = None) -> dict[str, dict]:
    """Finished queries by hash (a torn last line from a killed run is ignored)."""
    done: dict[str, dict] = {}
    if path.exists():
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                    if key is None or rec.get("tiers_key") == key:
                        done.setdefault(rec["qid"], rec)
                except (ValueError, KeyError, TypeError):
                    continue
    return done


# ----------------------------------------------------------------------------- labelling
def label(queries, tiers, *, judge_lm_cfg: dict, out_path, concurrency: int = 4, timeout_s: float = 60,
          retries: int = 3, cache_dir=None, dry_run: bool = False, judge_program=None, max_tokens=512,
          assumed_out_tokens: int | None = None, since=None, echo=print):
    """Label ``queries`` (list or file, see :func:`read_queries`) on ``tiers`` (cheapest first).

    ``max_tokens``: answer length limit, an int or ``{tier_name: int}``. Returns the Evalset written
    to ``out_path`` (with ``meta["labeling"]`` = the run summary), or None for ``dry_run``.
    """
    from route_switch.core.paths import cache_dir as default_cache
    from route_switch.labeling.calls import ChatCaller
    from route_switch.labeling.judge import Judge

    tiers = list(tiers)
    check_tiers(tiers)
    limits = {t.name: int(max_tokens.get(t.name, 512) if isinstance(max_tokens, dict) else max_tokens) for t in tiers}
    items = read_queries(queries, since=since)
    if not items:
        raise InputError("no queries to label")
    out_path = Path(out_path)
    prog_path = _progress_path(out_path)
    done = read_progress(prog_path, tiers_key(tiers))
    todo = [q for q in items if query_sha256(q["query"]) not in done]
    echo(_plan_line(todo, len(items), tiers, limits, assumed_out_tokens, judge_lm_cfg))
    if dry_run:
        echo("dry run: no model was called")
        return None

    cdir = Path(cache_dir) if cache_dir else default_cache() / "labels"
    caller = ChatCaller(cdir, timeout_s=timeout_s, retries=retries)
    judge = Judge(judge_lm_cfg, judge_program, caller=caller, cache_dir=cdir / "judge-local")
    labeller = _Labeller(tiers, limits, caller, judge)
    t0 = time.time()
    try:
        n_new = labeller.run(todo, done, prog_path, concurrency)
    finally:
        caller.close()
    recs = [done[query_sha256(q["query"])] for q in items if query_sha256(q["query"]) in done]
    summary = _summary(recs, tiers, n_new, len(items) - len(todo), labeller.failures, caller, judge,
                       time.time() - t0)
    echo(format_summary(summary))
    if not recs:
        failures = labeller.failures
        raise InputError(f"no query could be labelled; first error: {failures[0]['error'] if failures else '?'}")
    return _write_evalset(recs, tiers, out_path, summary)


def check_tiers(tiers: list):
    """ConfigError naming the tier field when ``tiers`` cannot be labelled on: at least 2, each with
    prices and an endpoint, distinct models."""
    if len(tiers) < 2:
        raise ConfigError("labelling needs at least 2 tiers", field="tiers")
    for i, t in enumerate(tiers):
        if t.price_in is None or t.price_out is None:
            raise ConfigError(f"tier '{t.name}' needs price_in and price_out (USD per 1M tokens) for labelling",
                              field=f"tiers[{i}].price_in")
        if not t.api_base:
            raise ConfigError(f"tier '{t.name}' needs api_base (its OpenAI-compatible endpoint)",
                              field=f"tiers[{i}].api_base")
    if len({t.model for t in tiers}) < len(tiers):
        raise ConfigError("tier models must be distinct (use upstream_model for the served name)", field="tiers")


def _plan_line(todo: list[dict], n_items: int, tiers, limits: dict, assumed_out_tokens, judge_lm_cfg) -> str:
    """What this run will call and roughly spend, said before any call."""
    est = estimate(todo, tiers, max_tokens=max(limits.values()), assumed_out_tokens=assumed_out_tokens,
                   judge_lm_cfg=judge_lm_cfg)
    jc = "unknown (no judge prices)" if est["judge_cost_usd"] is None else f"${est['judge_cost_usd']:.4f}"
    return (f"labelling {len(todo)} queries ({n_items - len(todo)} already done) x {len(tiers)} tiers: "
            f"<= {est['tier_calls']} tier calls (estimated ${est['tier_cost_usd']:.4f} at "
            f"{est['assumed_out_tokens']} output tokens per answer) + <= {est['judge_calls_max']} judge calls "
            f"({jc}); cached calls cost nothing")


class _Labeller:
    """Asks every tier, then the judge, for each query; a failed query is recorded, never guessed."""

    def __init__(self, tiers: list, limits: dict, caller, judge):
        self.tiers, self.limits, self.caller, self.judge = tiers, limits, caller, judge
        self.failures: list[dict] = []

    def answers(self, item: dict) -> list:
        msgs = [{"role": "user", "content": item["query"]}]
        return [self.caller.call_tier(t, msgs, max_tokens=self.limits[t.name]) for t in self.tiers]

    def rate(self, item: dict, answers: list) -> dict:
        """The progress record of a query: each tier's answer, cost and verdict against the top tier's."""
        tiers, ref = self.tiers, answers[-1].text
        rows = []
        for t, a in zip(tiers, answers):
            if t is tiers[-1]:
                verdict, score, by = "reference", 1.0, "definition"
            elif _words(a.text) == _words(ref) and _words(ref):
                verdict, score, by = "equivalent", self.judge.program.verdicts.get("equivalent", 1.0), "identical"
            else:
                verdict, score = self.judge.judge(item["query"], ref, a.text)
                by = "judge"
            row = {"tier": t.name, "model": t.model, "in_tokens": a.in_tokens, "out_tokens": a.out_tokens,
                   "cost_usd": t.cost(a.in_tokens, a.out_tokens), "verdict": verdict, "score": score,
                   "judged_by": by, "answer": a.text[:1000], "usage_estimated": a.usage_estimated}
            if item.get("answer") is not None:
                row["exact_match"] = exact_match(a.text, item["answer"])
            rows.append(row)
        return {"qid": query_sha256(item["query"]), "tiers_key": tiers_key(tiers), "query": item["query"],
                "task": item["task"], "gold": item.get("answer"),
                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tiers": rows}

    def fail(self, q: dict, e: BaseException):  # a failed query stays unlabelled; a re-run retries it
        self.failures.append({"query": q["query"][:120], "error": f"{type(e).__name__}: {e}"[:400]})
        log.warning("labelling failed for %r: %s", q["query"][:60], e)

    def run(self, todo: list[dict], done: dict, prog_path: Path, concurrency: int) -> int:
        """Label ``todo`` into ``done`` and the progress file; the number labelled.

        Two phases: every tier answer first, then every judge call (a local judge server then keeps
        the judge prompt's prefix in its KV cache from one call to the next).
        """
        from concurrent.futures import ThreadPoolExecutor

        prog_path.parent.mkdir(parents=True, exist_ok=True)
        pool = ThreadPoolExecutor(max_workers=max(1, int(concurrency)), thread_name_prefix="label")
        try:
            got = self._answer_all(pool, todo)
            return self._rate_all(pool, got, done, prog_path)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _answer_all(self, pool, todo: list[dict]) -> list[tuple[dict, list]]:
        """``[(query, tier answers)]`` in ``todo``'s order, failed queries left out."""
        from concurrent.futures import as_completed

        got = []
        futs = {pool.submit(self.answers, q): q for q in todo}
        for fut in as_completed(futs):
            try:
                got.append((futs[fut], fut.result()))
            except Exception as e:
                self.fail(futs[fut], e)
        order = {query_sha256(q["query"]): i for i, q in enumerate(todo)}
        got.sort(key=lambda x: order[query_sha256(x[0]["query"])])
        return got

    def _rate_all(self, pool, got: list[tuple[dict, list]], done: dict, prog_path: Path) -> int:
        """Judge every answered query, appending each record to the progress file as it finishes."""
        from concurrent.futures import as_completed

        lock = threading.Lock()
        n_new = 0
        futs = {pool.submit(self.rate, q, a): q for q, a in got}
        with open(prog_path, "a", encoding="utf-8") as prog:
            for fut in as_completed(futs):
                try:
                    rec = fut.result()
                except Exception as e:
                    self.fail(futs[fut], e)
                    continue
                with lock:
                    prog.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    prog.flush()
                    done[rec["qid"]] = rec
                    n_new += 1
        return n_new


def _write_evalset(recs: list[dict], tiers, out_path: Path, summary: dict):
    """The labelled queries as an evalset in the long format, saved to ``out_path``."""
    from route_switch.core.evalset import from_records, save_evalset

    long_rows = [{"id": r["qid"][:16], "prompt": r["query"], "task": r["task"], "split": "", "model": x["model"],
                  "score": x["score"], "cost_usd": x["cost_usd"]} for r in recs for x in r["tiers"]]
    ev = from_records(long_rows, models=[t.model for t in tiers], source=str(out_path))
    save_evalset(ev, out_path)
    ev.source = str(out_path)
    ev.meta["labeling"] = summary
    return ev


def _summary(recs, tiers, n_new, n_resumed, failures, caller, judge, wall_s) -> dict:
    import numpy as np

    by_tier = {t.name: [x for r in recs for x in r["tiers"] if x["tier"] == t.name] for t in tiers}
    s = {"queries_labelled": len(recs), "labelled_this_run": n_new, "resumed": n_resumed,
         "failed": len(failures), "failures": failures[:10], "tier_calls": caller.calls, "cache_hits": caller.hits,
         "judge_calls": judge.calls, "wall_s": round(wall_s, 2),
         "mean_score": {k: float(np.mean([x["score"] for x in v])) if v else None for k, v in by_tier.items()},
         "total_cost_usd": {k: float(sum(x["cost_usd"] for x in v)) for k, v in by_tier.items()},
         "verdicts": {k: {vv: sum(x["verdict"] == vv for x in v) for vv in {x["verdict"] for x in v}}
                      for k, v in by_tier.items()}}
    gold = [(x["score"] >= 0.5, x["exact_match"]) for r in recs for x in r["tiers"][:-1] if "exact_match" in x]
    if gold:
        tops = [r["tiers"][-1]["exact_match"] for r in recs if "exact_match" in r["tiers"][-1]]
        s["judge_agreement"] = {"n": len(gold), "agreement": float(np.mean([a == b for a, b in gold])),
                                "top_tier_exact_match": float(np.mean(tops)) if tops else None,
                                "rule": "judge verdict >= acceptable vs exact match with the gold answer"}
    return s


def format_summary(s: dict) -> str:
    lines = [f"labelled {s['queries_labelled']} queries ({s['labelled_this_run']} this run, {s['resumed']} resumed, "
             f"{s['failed']} failed) in {s['wall_s']}s: {s['tier_calls']} tier/judge endpoint calls, "
             f"{s['cache_hits']} cache hits, {s['judge_calls']} judge calls"]
    for k, v in s["mean_score"].items():
        if v is not None:
            lines.append(f"  {k:<12} mean score {v:.3f}  cost ${s['total_cost_usd'][k]:.5f}  {s['verdicts'][k]}")
    if "judge_agreement" in s:
        a = s["judge_agreement"]
        lines.append(f"  judge agreement with exact match: {a['agreement']:.1%} on {a['n']} answers")
    for f in s["failures"][:3]:
        lines.append(f"  failed: {f['query']!r}: {f['error']}")
    return "\n".join(lines)
