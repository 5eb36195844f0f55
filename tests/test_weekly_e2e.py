"""The whole weekly loop for real: a real llama.cpp server (Qwen2.5-Coder-0.5B GGUF from PyPI) plays
every tier and the judge.

Route log (8 queries the project wrote) → labelling (real answers over HTTP, real judge verdicts,
validated) → MIPROv2 (tiny budget) → gate on a held-out slice → promotion → report. Tiers differ by
their answer length limit (8 / 20 / 40 tokens), so the cheap tiers' answers are genuinely cut short
and the judge has something to judge.

The router LM that MIPROv2 optimises is the FAKE router engine by default: with the real 0.5B model
as router LM the optimisation step alone took minutes on 2 shared cores. Set
ROUTE_SWITCH_E2E_REAL_ROUTER=1 to use the real server as router LM too (slower, not bounded).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("llama_cpp")

from conftest import synthetic_records  # noqa: E402
from servers import llama_upstream  # noqa: E402,F401

from route_switch.core.paths import packaged_dir  # noqa: E402
from route_switch.core.decision import Decision  # noqa: E402
from route_switch.core.evalset import from_records, load_evalset, save_evalset  # noqa: E402
from route_switch.jobs.reoptimize import reoptimize  # noqa: E402
from route_switch.core.routelog import RouteLog  # noqa: E402

pytestmark = pytest.mark.local_llm
ROOT = Path(__file__).resolve().parents[1]

WEEK = ["What is the capital of France?", "Translate 'good morning' into Spanish.",
        "What is 12 + 30?", "Name the largest planet in the solar system.",
        "Write a Python function that reverses a string.", "Explain in one sentence what a CPU does.",
        "Prove that the square root of 2 is irrational.", "Is 91 a prime number? Explain briefly."]
# A compact judge program (no demos): the 0.5B judge re-reads it on every call, ~4x fewer prompt
# tokens than programs/judge.yaml. Same signature and verdicts.
COMPACT_JUDGE = {"name": "judge-compact", "verdicts": {"equivalent": 1.0, "acceptable": 0.5, "worse": 0.0},
                 "instruction": "Compare the candidate answer with the reference answer to the request. "
                                "equivalent: same result. acceptable: correct but less complete. "
                                "worse: wrong, empty or cut off."}


def test_weekly_loop_for_real(tmp_path, llama_upstream):  # noqa: F811
    url = llama_upstream
    save_evalset(from_records(synthetic_records(36), source="synthetic"), tmp_path / "labels" / "evalset.jsonl")
    rl = RouteLog(tmp_path / "logs" / "routes.jsonl", privacy="full")
    for q in WEEK:
        rl.write(q, Decision(tier=2, tier_name="medium", model="medium", path="llm", reason="e2e"))
    rl.close()
    tiers = [{"name": n, "model": n, "price_in": pi, "price_out": po, "api_base": url, "upstream_model": "qwen-0.5b"}
             for n, pi, po in (("small", 0.1, 0.2), ("medium", 0.6, 1.2), ("large", 3.0, 6.0))]
    job = {"name": "weekly-e2e", "artifact_root": "optimized", "start_program": str(packaged_dir("programs") / "default.yaml"),
           "estimator_dir": "estimators/prod", "route_log": "logs/routes.jsonl", "period_days": 7, "sample_size": 8,
           "evalset": "labels/evalset.jsonl", "tiers": tiers,
           "judge_lm": {"kind": "openai", "model": "qwen-0.5b", "api_base": url, "grammar": False, "max_tokens": 24},
           "router_lm": ({"kind": "openai", "model": "qwen-0.5b", "api_base": url, "max_tokens": 16, "timeout_s": 60,
                          "proposal_max_tokens": 120} if os.environ.get("ROUTE_SWITCH_E2E_REAL_ROUTER") else
                         {"kind": "fake"}),
           "lambda": 0.3, "optimize": {"num_candidates": 2, "num_trials": 2, "n_train": 6, "n_val": 4},
           "labeling": {"concurrency": 1, "timeout_s": 120, "retries": 1,
                        "max_tokens": {"small": 8, "medium": 20, "large": 40}},
           "gate": {"min_objective_delta": -1.0}, "holdout_share": 0.15, "drift": {"threshold": 0.1},
           "report_dir": "reports", "lock_file": "run/.lock", "cache_dir": "cache", "work_dir": "run"}
    (tmp_path / "judge.yaml").write_text(yaml.safe_dump(COMPACT_JUDGE))
    job["judge_program"] = "judge.yaml"
    path = tmp_path / "weekly.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))

    t0 = time.time()
    res = reoptimize(path)
    wall = time.time() - t0
    lab = res["labeling"]
    print(json.dumps({"wall_s": round(wall, 1), "timings_s": res["timings_s"], "labeling": {
        k: lab[k] for k in ("labelled_this_run", "failed", "tier_calls", "cache_hits", "judge_calls", "wall_s",
                            "mean_score", "verdicts")}, "program": {k: res["program"][k] for k in ("delta", "gate")},
        "estimator_gate": res["estimator"]["gate"]}, indent=1))
    assert lab["labelled_this_run"] + lab["failed"] == len(WEEK) and lab["labelled_this_run"] >= 6, lab
    assert lab["tier_calls"] >= 3 * lab["labelled_this_run"]
    assert res["status"] == "promoted" and res["promoted"]["program"]
    art = tmp_path / "optimized" / "weekly-e2e"
    assert (art / "instruction.txt").read_text().strip()
    assert json.loads((art / "metrics.json").read_text())["reoptimize"]["gate"]
    merged = load_evalset(tmp_path / "labels" / "evalset.jsonl")
    assert len(merged) == 36 + lab["labelled_this_run"]
    report = Path(res["report"]).read_text()
    assert "## Router program (MIPROv2)" in report and "## Drift" in report

    # a re-run the same week finds everything labelled: no labelling calls at all
    res2 = reoptimize(path)
    assert res2["route_log"]["already_labelled"] == lab["labelled_this_run"] and "labeling" not in res2
