"""``--help`` explains every option, ``--version`` works, and a usage error is two lines, not a synopsis."""
from __future__ import annotations

import argparse

import pytest

from route_switch import __version__
from route_switch.cli import build_parser, main

KNOWN_WITHOUT_HELP: set = set()  # (sub-command, option) pairs allowed to lack help text: none


def sub_parsers() -> dict[str, argparse.ArgumentParser]:
    p = build_parser()
    return next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_option_of_every_sub_command_has_help():
    missing = []
    for name, sp in sub_parsers().items():
        for action in sp._actions:
            label = action.option_strings[-1] if action.option_strings else action.dest
            if (name, label) in KNOWN_WITHOUT_HELP:
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{name} {label}")
    assert missing == [], f"options without help text: {missing}"


def test_every_sub_command_has_a_summary_and_its_help_renders():
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {a.dest: a.help for a in sub._choices_actions}
    for name, sp in sub.choices.items():
        assert summaries.get(name), f"sub-command {name} has no summary in route-switch --help"
        text = sp.format_help()  # a stray '%' in a help text would raise here
        assert "usage: route-switch " + name in text


def test_help_shows_defaults_and_no_rst_markup(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "``" not in out and ":class:" not in out
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "(default: 8000)" in out and "(default: 127.0.0.1)" in out and "--demo" in out
    assert "(default: None)" not in out and "(default: False)" not in out


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"route-switch {__version__}"


@pytest.mark.parametrize("argv, says", [
    (["evaluate"], "--evalset"),
    (["evaluate", "--evalset", "x", "--bootstrap", "-3"], "--bootstrap"),
    (["bench", "--evalset", "x", "--lengths", "300,abc"], "--lengths"),
    (["serve", "--router", "r", "--port", "eighty"], "--port"),
    (["diff", "only-one"], "b"),
    (["no-such-command"], "invalid choice"),
])
def test_usage_error_is_one_usage_line_and_one_error_line(argv, says, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 2, err
    assert lines[0].startswith("usage: route-switch") and "--help" in lines[0]
    assert "error:" in lines[1] and says in lines[1] and "Traceback" not in err
