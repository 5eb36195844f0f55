"""Optimised-program artifacts: readable text, hand edits honoured, clear errors, atomic replacement."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from route_switch.core.paths import packaged_dir
from route_switch.llm.artifacts import diff, load_artifact, load_program, save_artifact, show
from route_switch.cli import main
from route_switch.llm.program import ProgramError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def program():
    return load_program(packaged_dir("programs") / "default.yaml")


def test_round_trip_and_files_are_text(program, tmp_path):
    d = save_artifact(tmp_path / "a", program, {"lambda": 0.5, "optimized_objective": 0.61})
    assert sorted(p.name for p in d.iterdir()) == ["demos.yaml", "instruction.txt", "metrics.json", "tiers.yaml"]
    assert (d / "instruction.txt").read_text().strip() == program.instruction
    back = load_artifact(d)
    assert back.instruction == program.instruction and back.demos == program.demos and back.tiers == program.tiers


def test_hand_edited_instruction_is_used_as_written(program, tmp_path):
    d = save_artifact(tmp_path / "a", program, {})
    (d / "instruction.txt").write_text("Send everything about cooking to tier 1.\nEverything else to tier 3.\n")
    assert load_program(d).instruction == "Send everything about cooking to tier 1.\nEverything else to tier 3."


@pytest.mark.parametrize("file, content, line", [
    ("demos.yaml", "- query: fine\n  tier: 1\n- query: bad\n  tier: 9\n", 3),
    ("demos.yaml", "- query: [unclosed\n", None),
    ("instruction.txt", "   \n", 1),
    ("instruction.txt", b"ok line\nbad \xff byte\n", 2),
    ("tiers.yaml", "name: x\ntiers: [{name: a}]\n", None),
])
def test_malformed_edits_name_file_and_line(program, tmp_path, file, content, line):
    d = save_artifact(tmp_path / "a", program, {})
    (d / file).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ProgramError) as e:
        load_artifact(d)
    assert e.value.file.endswith(file)
    if line is not None:
        assert e.value.line == line and f"line {line}" in str(e.value)


def test_failed_write_leaves_previous_artifact_intact(program, tmp_path):
    d = save_artifact(tmp_path / "a", program, {"version": 1})

    changed = type(program)(program.name, program.tiers, "A new instruction.", program.demos)
    with pytest.raises(TypeError):  # metrics.json cannot be written: the run fails half-way
        save_artifact(d, changed, {"version": 2, "bad": object()})
    assert load_artifact(d).instruction == program.instruction
    assert json.loads((d / "metrics.json").read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a"]  # no temporary folder left behind


def test_show_and_diff(program, tmp_path, capsys):
    a = save_artifact(tmp_path / "a", program, {"optimized_objective": 0.5, "lambda": 0.5})
    changed = type(program)(program.name, program.tiers, program.instruction + "\nPrefer tier 2 for code.", program.demos)
    b = save_artifact(tmp_path / "b", changed, {"optimized_objective": 0.6, "lambda": 0.5})
    text = show(a)
    assert program.instruction.splitlines()[0] in text and "optimized_objective" in text
    dtext = diff(a, b)
    assert "+Prefer tier 2 for code." in dtext and "optimized_objective: 0.5 -> 0.6 (+0.1)" in dtext
    assert main(["diff", str(a), str(b)]) == 0
    assert "+Prefer tier 2 for code." in capsys.readouterr().out


def test_evaluate_uses_a_hand_edited_program(program, tmp_path, monkeypatch):
    """`evaluate --program` routes with the instruction exactly as a person left it (FAKE router LM)."""
    from route_switch.core.evalset import from_records
    from route_switch.optimization.evaluate_llm import evaluate_llm
    from route_switch.llm.fakes import FAKE_PROPOSALS

    from conftest import synthetic_records

    monkeypatch.setenv("ROUTE_SWITCH_CACHE", str(tmp_path / "cache"))
    ev = from_records(synthetic_records(200), models=["small", "medium", "large"])
    train, test = ev.split(0.3, 0)
    d = save_artifact(tmp_path / "a", program, {})
    before = evaluate_llm(train, test, d, lm_cfg={"kind": "fake"}, n=40, progress=False)
    (d / "instruction.txt").write_text(FAKE_PROPOSALS[0] + "\n")  # the fake follows this one to tier 1
    after = evaluate_llm(train, test, d, lm_cfg={"kind": "fake"}, n=40, progress=False)
    assert after["routers"]["llm"]["label"]["tier_shares"][0] == 1.0
    assert before["routers"]["llm"]["label"]["tier_shares"][0] < 1.0
