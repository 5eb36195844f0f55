"""Strict knobs: out-of-range or non-finite τ/λ is a ValueError naming the knob and its range, everywhere."""
from __future__ import annotations

import math

import pytest

from route_switch.cli import main
from route_switch.routing.config import load_config
from route_switch.routing.controller import Router, route
from route_switch.core.errors import ConfigError
from route_switch.routing.fitting import fit
from route_switch.core.knobs import check_knob
from servers import fitted_router_dir  # noqa: F401  (fixture)

BAD_TAU = [math.nan, -5, 1.5, math.inf, -math.inf, True, "0.2"]
BAD_LAM = [math.nan, -0.1, math.inf, False, "1"]


@pytest.fixture(scope="module")
def router(fitted_router_dir):
    return Router.from_config(fitted_router_dir)


def test_check_knob_accepts_range_and_refuses_the_rest():
    assert check_knob("tau", 0) == 0.0 and check_knob("tau", 1) == 1.0 and check_knob("lambda", 1e6) == 1e6
    assert check_knob("tau", None) is None
    for bad in BAD_TAU:
        with pytest.raises(ValueError, match=r"tau must be a finite number within \[0, 1\]"):
            check_knob("tau", bad)
    for bad in BAD_LAM:
        with pytest.raises(ValueError, match=r"lambda must be a finite number >= 0"):
            check_knob("lambda", bad)


@pytest.mark.parametrize("bad", BAD_TAU)
def test_route_and_route_batch_refuse_bad_tau(router, bad):
    with pytest.raises(ValueError, match=r"tau .*\[0, 1\]"):
        router.route("What is 2 + 2?", tau=bad)
    with pytest.raises(ValueError, match=r"tau .*\[0, 1\]"):
        router.route_batch(["What is 2 + 2?"], tau=bad)
    with pytest.raises(ValueError, match=r"tau .*\[0, 1\]"):
        route("What is 2 + 2?", tau=bad, router=router)


@pytest.mark.parametrize("bad", BAD_LAM)
def test_route_refuses_bad_lambda(router, bad):
    with pytest.raises(ValueError, match="lambda must be .* >= 0"):
        router.route("What is 2 + 2?", lam=bad)
    with pytest.raises(ValueError, match="lambda must be .* >= 0"):
        router.route_batch(["a", "b"], lam=bad)


def test_valid_knobs_still_route(router):
    assert router.route("Prove Fermat's last theorem", tau=0.0).tier >= 1
    assert len(router.route_batch(["a", "b"], lam=0.5)) == 2
    with pytest.raises(ValueError, match="tau"):
        Router(tiers=router.tiers, estimator=router.estimator, tau=math.nan)


def test_fit_refuses_bad_targets(synthetic, tmp_path):
    with pytest.raises(ValueError, match=r"target_quality must be .*\[0, 1\]"):
        fit(synthetic, tmp_path / "r", target_quality=math.nan)
    with pytest.raises(ValueError, match=r"target_cost_share must be .*\[0, 1\]"):
        fit(synthetic, tmp_path / "r", target_cost_share=-1)
    assert not (tmp_path / "r").exists()  # refused before anything is written


@pytest.mark.parametrize("sel, field", [("{tau: .nan}", "selection.tau"), ("{tau: -5}", "selection.tau"), ("{lambda: .inf}", "selection.lambda"),
                                        ("{lambda: -1}", "selection.lambda"), ("{tau: yes}", "selection.tau")])
def test_router_yaml_refuses_bad_knobs(tmp_path, sel, field):
    p = tmp_path / "router.yaml"
    p.write_text(f"tiers: [{{model: a}}]\nselection: {sel}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.field == field and str(p) in str(e.value) and "finite number" in str(e.value)


@pytest.mark.parametrize("args", [["route", "--tau", "nan", "hi"], ["route", "--tau", "-5", "hi"],
                                  ["route", "--lambda", "inf", "hi"], ["fit", "--evalset", "x", "--target-quality", "2"]])
def test_cli_refuses_bad_knobs_with_one_line(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "must be a finite number" in err and "Traceback" not in err


def test_proxy_refuses_nan_and_infinity_in_json(router):
    pytest.importorskip("starlette")
    import httpx

    from route_switch.server import create_app
    from servers import run_app

    with run_app(create_app(router, api_keys={"k"})) as base:
        auth = {"Authorization": "Bearer k", "content-type": "application/json"}
        for body, knob in (('{"query": "hi", "tau": NaN}', "tau"), ('{"query": "hi", "lambda": Infinity}', "lambda"),
                           ('{"query": "hi", "model": "router-tau-1.5"}', "tau")):
            r = httpx.post(f"{base}/v1/route", content=body, headers=auth)
            assert r.status_code == 400 and f"{knob} must be a finite number" in r.json()["error"]["message"], r.text
        assert httpx.post(f"{base}/v1/route", content='{"query": "hi", "tau": 0.3}', headers=auth).status_code == 200


def test_weekly_job_refuses_a_non_finite_lambda(tmp_path):
    from route_switch.jobs.job_config import load_job

    from pathlib import Path

    example = (Path(__file__).resolve().parents[1] / "examples" / "weekly-job.yaml").read_text()
    assert "\nlambda: " in example
    job = tmp_path / "job.yaml"
    job.write_text("\n".join("lambda: .nan" if line.startswith("lambda:") else line for line in example.splitlines()))
    with pytest.raises(ConfigError) as e:
        load_job(job)
    assert e.value.field == "lambda" and "finite" in str(e.value)


def test_error_message_stays_short_for_huge_values():
    with pytest.raises(ValueError) as e:
        check_knob("tau", list(range(100_000)))
    assert len(str(e.value)) < 200
