"""The policy matcher with the real MiniLM encoder and real training queries: it applies a policy to
its topic, not to unrelated queries or its counter-examples, and the earlier line wins."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import pytest

from route_switch.core.paths import packaged_dir
from route_switch.core.files import read_yaml
from route_switch.llm.policies import Policy, apply_policy
from route_switch.core.encoders import minilm_available
from route_switch.llm.policy_match import PolicyMatcher, overlapping_examples, request_part, topic_phrases, training_queries
from route_switch.llm.router_llm import RouterLLM
from route_switch.llm.program import RoutingProgram

ROOT = Path(__file__).resolve().parents[1]
EDITS = read_yaml(ROOT / "benchmarks" / "policy_edits.yaml")

pytestmark = pytest.mark.skipif(not minilm_available(), reason="needs the minilm extra")


@pytest.fixture(scope="module")
def background():
    bg = training_queries()
    assert len(bg) >= 500  # the shared data is there: calibration on real training queries
    return bg


def _policy(name, **extra):
    e = next(e for e in EDITS["edits"] if e["name"] == name)
    return Policy(e["topic"], int(e["tier"]), (e["example"],), **extra), e["queries"]


def test_request_part_and_topic_phrases():
    assert request_part('Translate into German: "The algorithm is quadratic."') == "Translate into German"
    assert topic_phrases("legal advice (leases, police or copyright)") == [
        "legal advice (leases, police or copyright)", "legal advice", "leases", "police", "copyright"]


def test_each_distinct_view_is_embedded_once():
    from route_switch.llm.policy_match import _embed_views

    class CountingFakeEncoder:  # a fake: one distinct vector per text, counts what it embeds
        seen: list = []

        def embed(self, texts):
            self.seen += list(texts)
            return np.array([[len(t), sum(map(ord, t)) % 97] for t in texts], float)

    enc = CountingFakeEncoder()
    qs = ["What is 2+2?", 'Translate into German: "The algorithm is quadratic."', "What is 2+2?"]
    v = _embed_views(enc, qs)
    assert sorted(enc.seen) == sorted({*qs, "Translate into German"})  # a short question is its own request part
    full = enc.embed(qs + [request_part(q) for q in qs]).reshape(2, 3, -1)
    assert np.array_equal(v, full)


def test_policy_applies_to_its_topic_and_not_to_controls(background):
    (dose, dq), (tr, tq) = _policy("medication-dosage"), _policy("translation")
    m = PolicyMatcher().fit([dose, tr], background)
    got = [m.match(q) for q in dq + tq]
    assert sum(g is not None and g.policy == dose for g in got[:len(dq)]) >= 0.75 * len(dq)
    assert sum(g is not None and g.policy == tr for g in got[len(dq):]) >= 0.75 * len(tq)
    # One policy alone leaves (almost) every unrelated query to the router. (The translation policy
    # alone matches 4 of the 25 controls, all short tier-1 requests: docs/policies.md.)
    alone = PolicyMatcher().fit([dose], background)
    assert sum(alone.match(q) is not None for q in EDITS["controls"]) <= 2
    cal = m.calibration_
    assert [c["examples_matched"] for c in cal] == ["1/1", "1/1"]
    assert all(c["background_matched_pct"] <= 2.5 for c in cal)


def test_counter_example_is_not_matched(background):
    plain = Policy("SQL queries", 3, ("Write a SQL query that lists customers by total spend.",))
    counter = "Design a database schema for an online shop with orders and customers."
    m = PolicyMatcher().fit([plain.with_examples(counter_examples=[counter])], background)
    assert m.match(counter) is None
    assert m.match("Write a SQL query that finds the second highest salary.") is not None


def test_the_earlier_line_wins_and_overlaps_are_reported(background):
    a = Policy("legal advice", 3, ("Can my landlord keep my deposit?",))
    b = Policy("questions about renting a flat", 2, ("Can my landlord keep my deposit?",))
    q = "Can my landlord keep my whole deposit for a small stain?"
    assert PolicyMatcher().fit([a, b], background).match(q).policy == a
    m = PolicyMatcher().fit([b, a], background)
    assert m.match(q).policy == b
    warnings = overlapping_examples(m)
    assert warnings and "earlier line decides" in warnings[0]


def test_route_takes_the_policy_path_and_names_the_policy(background):
    from route_switch.routing.controller import Router
    from route_switch.llm.lm import make_lm
    from route_switch.core.tiers import Tier

    program = RoutingProgram.from_yaml(packaged_dir("programs") / "default.yaml")
    edited = apply_policy(program, "tax questions (income tax, VAT, tax returns) → tier 2",
                          example="Can I deduct my home office on my tax return?")
    lm = make_lm({"kind": "fake", "mode": "policy"}, labels=program.labels)
    router = Router(tiers=[Tier("small", "small"), Tier("medium", "medium"), Tier("large", "large")],
                    llm=RouterLLM(edited, lm=lm, policy_background=background), llm_timeout_s=30)
    d = router.route("How much income tax do I pay on a 50,000 euro salary?")
    assert (d.path, d.tier) == ("policy", 2) and "tax questions" in d.reason
    other = router.route("What is the capital of Canada?")
    assert other.path == "llm"
    plain = Router(tiers=router.tiers, llm=RouterLLM(program, lm=lm), llm_timeout_s=30)
    assert plain.route("What is the capital of Canada?").tier == other.tier  # untouched by the edit


def test_static_vectors_live_in_minilm_space_and_the_gate_keeps_the_matches(background):
    from route_switch.core.static_embed import StaticEmbedder
    from route_switch.llm.policy_match import _shared_minilm

    enc = _shared_minilm()
    st = StaticEmbedder(enc)
    texts = ["How much ibuprofen can I take?", "Write a haiku about rain.", "Write a SQL query that joins two tables."]
    s, full = st.embed(texts), enc.embed(texts)
    assert np.allclose(np.linalg.norm(s, axis=1), 1, atol=1e-4)
    sim = s @ full.T  # each static vector is nearest to its own sentence's MiniLM embedding
    assert (sim.argmax(1) == np.arange(len(texts))).all()
    other = st.embed(["What dose of paracetamol is safe?"])[0]
    assert s[0] @ other > max(s[1] @ other, s[2] @ other)
    (dose, dq), (tr, tq) = _policy("medication-dosage"), _policy("translation")
    gated, plain = PolicyMatcher().fit([dose, tr], background), PolicyMatcher(gate_rate=None).fit([dose, tr], background)
    assert gated.gate_ is not None and gated.gate_["background_passed_pct"] <= 30.0
    assert [gated.match(q) is not None for q in dq + tq] == [plain.match(q) is not None for q in dq + tq]


def test_benchmark_matcher_only_mode(capsys):
    import json
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import policy_edits

    policy_edits.main(["--matcher-only", "--only", "medication-dosage,legal-advice"])
    out = json.loads(capsys.readouterr().out)
    s = out["summary"]
    assert set(s) >= {"matched_mean", "matched_all_edits_together", "controls_matched_pct_mean",
                      "controls_matched_pct_all_edits", "gate_lost_matches_all_edits"}
    assert [e["edit"] for e in out["edits"]] == ["medication-dosage", "legal-advice"]
    assert s["matched_mean"] >= 90 and s["controls_matched_pct_all_edits"] <= 8
    union = next(c for c in out["calibration"] if "background_union_matched_pct" in c)
    assert union["background_union_matched_pct"] <= union["max_background_rate_pct"]
