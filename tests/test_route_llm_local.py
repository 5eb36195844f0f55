"""route() end to end with the real embedded router LLM (Qwen 0.5B GGUF in-process)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("llama_cpp")

from route_switch.core.paths import packaged_dir  # noqa: E402
from route_switch.routing.controller import Router  # noqa: E402
from route_switch.routing.fitting import fit  # noqa: E402
from route_switch.core.tiers import Tier  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.local_llm


def test_router_llm_path_bypass_and_fallback(synthetic, tmp_path):
    tiers = [Tier("small", "small"), Tier("medium", "medium"), Tier("large", "large")]
    fit(synthetic, tmp_path / "r", tiers=tiers, target_quality=0.95, bypass_tokens=3,
        llm={"program": str(packaged_dir("programs") / "default.yaml"), "lm": {"kind": "local"}, "timeout_s": 20.0,
             "fusion_n": 24})  # the real model routes 24 training queries to fit the fusion
    doc = yaml.safe_load((tmp_path / "r" / "router.yaml").read_text())
    assert doc["llm"]["lm"] == {"kind": "local"} and doc["llm"]["fusion"] == "fusion.json"
    router = Router.from_config(tmp_path / "r")

    assert router.route("hi").path == "bypass"  # 1 token < 3: no LLM call
    deadline = time.time() + 120  # the background warm-up loads the model first
    d = router.route("Prove that there are infinitely many prime numbers.")
    while d.path != "llm" and time.time() < deadline:
        time.sleep(1.0)
        router._cache.clear()
        d = router.route("Prove that there are infinitely many prime numbers.")
    assert d.path == "llm" and d.tier in (1, 2, 3) and "fused" in d.reason, d
    assert len(d.tier_probs) == 3 and abs(sum(d.tier_probs) - 1) < 1e-3
    # the knob works on the LLM path: tau = 1 always buys the cheapest tier, tau = 0 the best predicted
    assert router.route("Prove that there are infinitely many prime numbers.", tau=1.0).tier == 1
    t = time.perf_counter()
    d2 = router.route("What is the capital of Japan?")
    assert d2.path == "llm" and time.perf_counter() - t < 10

    # a deadline the LLM cannot meet: the estimator answers, and says why
    router.llm_timeout_s = 0.001
    d3 = router.route("Summarise the plot of Hamlet in two sentences.")
    assert d3.path == "estimator" and "router LLM" in d3.reason and d3.fallback_from == "llm"
