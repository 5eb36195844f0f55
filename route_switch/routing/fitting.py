"""Fit a deployable router from an evalset: estimator + calibrated knob + router.yaml.

The router directory is written as one unit: everything goes into a new sibling folder, which
replaces the old one with a single atomic exchange (``renameat2(RENAME_EXCHANGE)`` on Linux); the
previous version is kept as ``.<name>.prev``. A lock file (``.<name>.lock``), taken before any work
and held to the end, makes a second fit into the same directory fail at once with an error naming
the directory, the lock and its holder: two fits racing would otherwise both succeed and silently
leave whichever finished last.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from route_switch.routing.config import RouterConfig, dump_config
from route_switch.core.errors import ConfigError
from route_switch.core.estimator import QualityEstimator
from route_switch.core.evalset import Evalset
from route_switch.core.selection import calibrate
from route_switch.core.tiers import Tier, tiers_by_cost


def fit(train: Evalset, out_dir: str | Path, *, tiers: list[Tier] | None = None, target_quality: float | None = 0.95,
        target_cost_share: float | None = None, estimator_params: dict | None = None, seed: int = 0,
        bypass_tokens: int = 0, llm: dict | None = None, max_quality_loss: float | None = None,
        confidence: float = 0.9) -> RouterConfig:
    """Calibrate τ on a validation slice, fit the estimator on all of ``train``, write ``out_dir``.

    ``out_dir`` receives ``estimator.json``, ``arrays.npz`` and ``router.yaml`` (tiers, τ, paths),
    ready for ``Router.from_config(out_dir)``. With ``llm={program, lm, fusion_n, ...}`` the router LLM
    is configured too, and with ``fusion_n > 0`` a fusion of the two is fitted and calibrated
    (``fusion.json``, ``llm.tau``; see :func:`route_switch.routing.fusion.fit_fusion`).

    With ``max_quality_loss`` (ε) the anchored rule's τ is certified by Learn-then-Test
    (:mod:`route_switch.core.risk`): quality lost versus the best single model ≤ ε with probability
    ≥ ``confidence``. The estimator is then the one fitted without the calibration slice (a
    refit would void the guarantee).

    The directory is written as one unit (see the module docstring).
    """
    from route_switch.core.files import JobLock
    from route_switch.core.knobs import check_knob

    check_knob("target_quality", target_quality)
    check_knob("target_cost_share", target_cost_share)
    if isinstance(bypass_tokens, bool) or not isinstance(bypass_tokens, int) or bypass_tokens < 0:
        raise ConfigError(f"must be a whole number >= 0, got {bypass_tokens!r}", field="bypass_tokens")
    out = Path(out_dir)
    with JobLock(out.with_name(f".{out.name}.lock"), what=f"cannot fit into {out}"):
        return _fit_locked(train, out, tiers=tiers, target_quality=target_quality,
                           target_cost_share=target_cost_share, params=estimator_params or {}, seed=seed,
                           bypass_tokens=bypass_tokens, llm=llm, max_quality_loss=max_quality_loss,
                           confidence=confidence)


def _fit_locked(train: Evalset, out: Path, *, tiers, target_quality, target_cost_share, params, seed, bypass_tokens,
                llm, max_quality_loss, confidence) -> RouterConfig:
    """The body of :func:`fit`, run under the folder's lock."""
    from route_switch.core.files import swap_dir

    rule, risk = "tau", None
    if max_quality_loss is not None:
        from route_switch.core.risk import calibrate_risk

        est, _anchor, res = calibrate_risk(train, max_quality_loss, 1 - confidence, estimator_params=params, seed=seed)
        tau, rule = res["tau"], "anchored"
        risk = {"max_quality_loss": max_quality_loss, "confidence": confidence, "anchor": res["anchor"],
                "n_calibration": res["n_cal"], "certified": res["certified"], "method": f"learn-then-test ({res['method']})"}
    elif target_quality is not None or target_cost_share is not None:
        fit_part, val = train.split(0.2, seed + 1)
        est = QualityEstimator(**params).fit(fit_part.prompts, fit_part.scores, fit_part.models, fit_part.costs)
        tau = calibrate(est.predict(val.prompts), est.unit_cost_, val.scores, val.costs, knob="tau",
                        target_quality=None if target_cost_share is not None else target_quality,
                        target_cost_share=target_cost_share)
    else:
        tau = 0.1
    if risk is None:
        est = QualityEstimator(**params).fit(train.prompts, train.scores, train.models, train.costs)
    fusion = None
    if llm:  # fusion_n (fit_n, its old name) is an instruction to fit, not part of router.yaml
        llm = dict(llm)
        fusion_n = int(llm.pop("fusion_n", None) or llm.pop("fit_n", None) or 0)
        llm.pop("fit_n", None)
    if llm and llm.get("program") and fusion_n:
        fusion, llm = _fit_llm_fusion(train, llm, params, target_quality or 0.95, fusion_n)
    tiers = list(tiers or tiers_by_cost(est.models_, est.unit_cost_))
    new = out.with_name(f".{out.name}.new-{os.getpid()}")
    for stale in out.parent.glob(f".{out.name}.new-*"):  # ours, or left by a killed fit (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        est.save(new)
        if fusion is not None:  # router.yaml stores it relative to itself: valid after the swap
            fusion.save(new / "fusion.json")
            llm["fusion"] = str(new / "fusion.json")
        cfg = RouterConfig(tiers=tiers, estimator=str(new), tau=round(float(tau), 4), bypass_tokens=bypass_tokens,
                           llm=llm, rule=rule, risk=risk)
        dump_config(cfg, new / "router.yaml")
        swap_dir(new, out)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)  # a failed fit leaves the previous folder as it was
        raise
    cfg.estimator = str(out)
    if fusion is not None:
        cfg.llm["fusion"] = str(out / "fusion.json")
    return cfg


def _fit_llm_fusion(train: Evalset, llm: dict, params: dict, target_quality: float, fusion_n: int):
    """Fit the fusion; return it and the ``llm`` section of router.yaml (without the fusion path)."""
    from route_switch.llm.artifacts import load_program, program_path
    from route_switch.routing.fusion import fit_fusion

    llm = dict(llm)
    fusion, tau, _report = fit_fusion(train, load_program(llm["program"]), lm_cfg=llm.get("lm"),
                                      n=fusion_n, estimator_params=params, target_quality=target_quality)
    llm.update(tau=round(tau, 4), program=str(program_path(llm["program"]).resolve()))
    return fusion, llm
