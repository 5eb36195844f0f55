"""Mined policy lines (route_switch.optimization.mining) and the paired gate (route_switch.optimization.significance)."""
from __future__ import annotations

import numpy as np
import pytest

from route_switch.optimization.mining import mine_policies, mined_lines_in, policy_candidates
from route_switch.llm.policies import Policy, split_policies
from route_switch.optimization.significance import paired_gain

TOPICS = {  # words per topic, and which tier each topic truly needs (0-based)
    "translate french german spanish sentence language": 0,
    "integral derivative calculus theorem prove limit": 2,
    "capital country city population river mountain": 0,
    "python function recursion algorithm code compile": 1,
}


def _split(n_per=40, seed=0):
    rng = np.random.default_rng(seed)
    prompts, need = [], []
    filler = "please about some thing this would like know".split()
    for words, tier in TOPICS.items():
        w = words.split()
        for _ in range(n_per):
            prompts.append(" ".join(rng.choice(w, 4).tolist() + rng.choice(filler, 3).tolist()))
            need.append(tier if rng.random() < 0.85 else int(rng.integers(0, 3)))
    need = np.array(need)
    scores = (np.arange(3)[None, :] >= need[:, None]).astype(float)  # tier >= needed answers
    costs = np.tile([1.0, 3.0, 10.0], (len(need), 1))
    return prompts, scores, costs


def test_mined_lines_are_policies_backed_by_the_data():
    prompts, scores, costs = _split()
    tasks = [i // 40 for i in range(len(prompts))]
    mined = mine_policies(prompts, scores, costs, lam=0.3, unit=10.0, min_support=10, tasks=tasks)
    assert mined, "clear topics must yield lines"
    for m in mined:
        assert Policy.parse(m.policy.render()) == m.policy  # exactly the format people edit
        assert m.support >= 10 and m.advantage >= 0.05 and 0 < m.precision <= 1
        assert not any(m.policy.topic == p for p in prompts)  # words, not a copied query
    by_tier = {m.policy.tier for m in mined}
    assert 3 in by_tier  # the calculus group needs the top tier, against a 1/4 base rate
    calc = next(m for m in mined if m.policy.tier == 3)
    assert set(calc.terms) & set("integral derivative calculus theorem prove limit".split())
    d = calc.to_dict()
    assert d["line"].startswith("- If the request is about ") and d["support"] == calc.support


def test_no_lines_from_noise_or_tiny_data():
    rng = np.random.default_rng(1)
    prompts = [" ".join(rng.choice(list("abcdefghij"), 5)) * 3 for _ in range(10)]
    assert mine_policies(prompts, np.ones((10, 3)), np.ones((10, 3)), lam=0.1, unit=1.0) == []
    prompts, scores, costs = _split()
    rng = np.random.default_rng(2)
    noise = (rng.random(scores.shape) < 0.5).astype(float)  # outcomes unrelated to the words
    assert mine_policies(prompts, noise, np.ones_like(costs), lam=0.3, unit=10.0) == []


def test_candidates_keep_hand_policies_first():
    prompts, scores, costs = _split()
    mined = mine_policies(prompts, scores, costs, lam=0.3, unit=10.0, min_support=10)
    start = "Route requests.\n\nPolicies (override everything above):\n- If the request is about tax, answer 2."
    cands = policy_candidates(start, mined, sizes=(1, 3))
    assert [o for _, o in cands][0] == "mined:1"
    body, rules = split_policies(cands[-1][0])
    assert body == "Route requests." and rules[0] == Policy("tax", 2)
    assert len(mined_lines_in(cands[0][0], [m.to_dict() for m in mined])) == 1


def test_paired_gain():
    rng = np.random.default_rng(0)
    old = rng.random(200)
    same = paired_gain(old, old)
    assert same["mean_gain"] == 0 and same["lower"] == 0 and not same["passed"]
    better = paired_gain(old + 0.05 + 0.01 * rng.standard_normal(200), old)
    assert better["passed"] and 0 < better["lower"] < better["mean_gain"]
    noisy = paired_gain(old + 0.01 + 0.5 * rng.standard_normal(200), old, confidence=0.9)
    assert not noisy["passed"] and noisy["lower"] < 0
    with pytest.raises(ValueError):
        paired_gain([1.0, 2.0], [1.0])


def test_show_prints_mined_lines_with_support(tmp_path):
    from route_switch.llm.artifacts import save_artifact, show
    from route_switch.llm.program import RoutingProgram

    prompts, scores, costs = _split()
    mined = mine_policies(prompts, scores, costs, lam=0.3, unit=10.0, min_support=10)
    text, _ = policy_candidates("Route requests by difficulty; tier 1 is cheapest, tier 3 largest.", mined, sizes=(1,))[0]
    prog = RoutingProgram("p", [{"name": n, "description": n} for n in ("small", "medium", "large")], text)
    out = show(save_artifact(tmp_path / "p", prog, {"mined_policies": [m.to_dict() for m in mined]}))
    assert f"(1 of {len(mined)} in the instruction)" in out
    first = mined[0].policy.render().lstrip("- ")
    assert f"* {first}  [support {mined[0].support}, precision" in out
