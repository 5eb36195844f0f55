"""Defaults ship inside the package: found by name from any folder, the user's copies first."""
from __future__ import annotations

import shutil

import pytest

from route_switch.llm.artifacts import load_program, show
from route_switch.cli import main
from route_switch.core.errors import ConfigError
from route_switch.labeling.judge import JudgeProgram
from route_switch.core.paths import find_shipped, packaged_dir
from route_switch.core.spec import load_spec


def test_packaged_files_exist():
    assert {p.name for p in packaged_dir("programs").glob("*.yaml")} >= {"default.yaml", "judge.yaml", "demo_pool.yaml"}
    assert (packaged_dir("evalsets") / "zeroeval-3tier.yaml").is_file()


def test_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("default", "default.yaml", "programs/default.yaml"):
        assert find_shipped(name, "programs") == packaged_dir("programs") / "default.yaml"
    assert load_program("programs/default.yaml").name == load_program(packaged_dir("programs") / "default.yaml").name
    assert load_spec("zeroeval-3tier").file == str(packaged_dir("evalsets") / "zeroeval-3tier.yaml")
    assert JudgeProgram.from_yaml().verdicts
    assert "## instruction" in show("programs/default.yaml")
    with pytest.raises(ConfigError, match="no evalset spec 'nope'.*zeroeval-3tier"):
        load_spec("nope")


def test_user_folder_then_explicit_path_win(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "programs").mkdir()
    mine = tmp_path / "programs" / "default.yaml"
    text = (packaged_dir("programs") / "default.yaml").read_text().replace("name:", "name: mine #", 1)
    mine.write_text(text)
    assert find_shipped("programs/default.yaml", "programs") == mine.relative_to(tmp_path)
    assert load_program("default").name == "mine"
    elsewhere = tmp_path / "x.yaml"
    shutil.copy(packaged_dir("evalsets") / "zeroeval-3tier.yaml", elsewhere)
    assert load_spec(str(elsewhere)).file == str(elsewhere)
    assert find_shipped("other/default.yaml", "programs").as_posix() == "other/default.yaml"  # no guessing


def test_cli_show_packaged_program(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["show", "default"]) == 0
    assert "## demos" in capsys.readouterr().out


def test_router_yaml_names_a_shipped_program(tmp_path, monkeypatch):
    from route_switch.routing.config import dump_config, load_config

    monkeypatch.chdir(tmp_path)
    d = tmp_path / "r"
    d.mkdir()
    text = ("tiers:\n- {name: s, model: s}\n- {name: l, model: l}\nselection: {tau: 0.1}\n"
            "llm: {program: programs/default.yaml, tau: 0.2}\n")
    (d / "router.yaml").write_text(text)
    cfg = load_config(d)
    assert cfg.llm["program"] == str((packaged_dir("programs") / "default.yaml").resolve())
    dump_config(cfg, d / "router.yaml")
    assert "program: programs/default.yaml" in (d / "router.yaml").read_text()
    assert load_config(d).llm == cfg.llm


def test_weekly_job_example_finds_shipped_programs():
    from pathlib import Path

    from route_switch.jobs.job_config import load_job

    job = load_job(Path(__file__).resolve().parents[1] / "examples" / "weekly-job.yaml")
    assert job.start_program == packaged_dir("programs") / "default.yaml"
    assert job.judge_program == packaged_dir("programs") / "judge.yaml"
