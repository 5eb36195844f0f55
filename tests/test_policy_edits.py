"""Policy edits: the rendered section, the FAKE engine following it, and the real embedded model."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from route_switch.core.paths import packaged_dir
from route_switch.core.files import read_yaml
from route_switch.llm.policies import HEADER, Policy, PolicyError, apply_policies, apply_policy, split_policies
from route_switch.llm.router_llm import RouterLLM
from route_switch.llm.program import RoutingProgram

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = packaged_dir("programs") / "default.yaml"
EDITS = read_yaml(ROOT / "benchmarks" / "policy_edits.yaml")


@pytest.fixture(scope="module")
def program():
    return RoutingProgram.from_yaml(DEFAULT)


def test_policy_section_is_plain_text_and_round_trips(program):
    edited = apply_policies(program, ["legal advice → tier 3", "If the request is about translation, answer 1."])
    body, rules = split_policies(edited.instruction)
    assert body == program.instruction.rstrip()
    assert rules == [Policy("legal advice", 3), Policy("translation", 1)]
    assert edited.instruction.endswith(HEADER + "\n- If the request is about legal advice, answer 3.\n"
                                       "- If the request is about translation, answer 1.")
    assert edited.demos == program.demos and edited.tiers == program.tiers
    assert program.instruction == RoutingProgram.from_yaml(DEFAULT).instruction  # the input is not modified


def test_same_topic_replaces_and_hand_written_lines_survive(program):
    hand = RoutingProgram(program.name, program.tiers,
                          program.instruction + f"\n\n{HEADER}\n- legal advice -> 2\nKeep answers short.", [])
    edited = apply_policy(hand, Policy("Legal advice", 3))
    body, rules = split_policies(edited.instruction)
    assert rules == [Policy("Legal advice", 3)]
    assert "Keep answers short." in body


def test_examples_are_indented_lines_under_the_rule(program):
    edited = apply_policy(program, "legal advice → tier 3", example="Is jaywalking legal?",
                          counter_examples=["Write a\nPython class for contracts."])
    assert edited.demos == program.demos  # the router LLM's prompt is not touched
    assert edited.instruction.endswith("- If the request is about legal advice, answer 3.\n"
                                       "    e.g. Is jaywalking legal?\n    not: Write a Python class for contracts.")
    (rule,) = split_policies(edited.instruction)[1]
    assert rule.enforced and rule.examples == ("Is jaywalking legal?",)
    again = apply_policy(apply_policy(edited, "tax → tier 2", example="Is VAT due on books?"),
                         "legal advice → tier 2", example="Can I sue my landlord?")
    rules = split_policies(again.instruction)[1]
    assert [(r.topic, r.tier) for r in rules] == [("legal advice", 2), ("tax", 2)]  # replaced in place
    assert rules[0].examples == ("Can I sue my landlord?",)
    with pytest.raises(PolicyError, match="example"):
        apply_policy(program, "legal advice → tier 3", example="  ")


def test_hand_typed_examples_parse_and_only_hints_reach_the_llm(program):
    from route_switch.llm.policies import enforced_policies, llm_instruction

    text = (program.instruction + f"\n\n{HEADER}\n- tax questions -> tier 2\n  e.g. How do I file my taxes?\n"
            "  Not: What is compound interest?\n- If the request is about python, answer 1.")
    assert [(p.topic, p.examples, p.counter_examples) for p in enforced_policies(text)] == [
        ("tax questions", ("How do I file my taxes?",), ("What is compound interest?",))]
    seen = llm_instruction(text)
    assert "tax" not in seen and seen.endswith(HEADER + "\n- If the request is about python, answer 1.")
    assert llm_instruction(program.instruction) == program.instruction


def test_enforced_edit_leaves_the_llm_prompt_as_it_was(program):
    from route_switch.llm.lm import make_lm

    lm = make_lm({"kind": "fake", "mode": "policy"}, labels=program.labels)
    edited = apply_policy(program, "tax → tier 2", example="Is VAT due on books?")
    a, b = RouterLLM(program, lm=lm), RouterLLM(edited, lm=lm)
    assert a.module.predict.signature.instructions == b.module.predict.signature.instructions
    assert [d.query for d in a.module.predict.demos] == [d.query for d in b.module.predict.demos]
    assert a.matcher is None and len(b.enforced) == 1


@pytest.mark.parametrize("text", ["legal advice", "→ tier 3", "legal advice → tier 4", "legal advice → tier 0"])
def test_bad_policy_is_a_clear_error(program, text):
    with pytest.raises(PolicyError, match="policy"):
        apply_policy(program, text)


def _route(program, queries, lm):
    router = RouterLLM(program, lm=lm)
    return [router.predict(q)[0] + 1 for q in queries]


def test_fake_engine_follows_an_edit_in_the_expected_direction(program):
    from route_switch.llm.lm import make_lm

    lm = make_lm({"kind": "fake", "mode": "policy"}, labels=program.labels)
    controls = EDITS["controls"]
    ctl_before = _route(program, controls, lm)
    for edit in EDITS["edits"]:
        tier, queries = int(edit["tier"]), edit["queries"]
        before = _route(program, queries, lm)
        edited = apply_policy(program, Policy(edit["topic"], tier))
        after = _route(edited, queries, lm)
        assert sum(a == tier for a in after) > sum(b == tier for b in before), edit["name"]
        assert all(a == tier for a, b in zip(after, before) if a != b), edit["name"]  # moves only towards it
        moved = sum(a != b for a, b in zip(_route(edited, controls, lm), ctl_before))
        assert moved <= 0.1 * len(controls), edit["name"]


def test_benchmark_json_and_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROUTE_SWITCH_CACHE", str(tmp_path))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import policy_edits

    policy_edits.main(["--lm-kind", "fake", "--style", "if+demo"])
    first = json.loads(capsys.readouterr().out)
    assert first["n_edits"] >= 5 and first["n_controls"] >= 20
    assert all(e["n"] >= 20 for e in first["edits"])
    s = first["summary"]
    assert s["compliance_after_mean"] > s["compliance_before_mean"]
    assert first["lm_calls"]["model_calls"] > 0
    policy_edits.main(["--lm-kind", "fake", "--style", "if+demo"])
    second = json.loads(capsys.readouterr().out)
    assert second["lm_calls"]["model_calls"] == 0  # everything replayed from the disk cache
    assert second["summary"] == first["summary"]


@pytest.mark.local_llm
def test_embedded_model_follows_policy_edits(program):
    """A few queries per edit with the real Qwen 0.5B: compliance rises with the edit (rule + example demo)."""
    pytest.importorskip("llama_cpp")
    from route_switch.llm.lm import make_lm

    lm = make_lm({"kind": "local"}, labels=program.labels)
    before_ok = after_ok = n = 0
    for edit in EDITS["edits"]:
        tier, queries = int(edit["tier"]), edit["queries"][:4]
        before = _route(program, queries, lm)
        after = _route(apply_policy(program, Policy(edit["topic"], tier), example=edit["example"]), queries, lm)
        before_ok += sum(t == tier for t in before)
        after_ok += sum(t == tier for t in after)
        n += len(queries)
    assert after_ok >= before_ok + 0.3 * n, (before_ok, after_ok, n)
    assert after_ok >= 0.7 * n, (after_ok, n)
