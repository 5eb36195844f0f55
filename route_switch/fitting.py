"""Fit a deployable router from an evalset: estimator + calibrated knob + router.yaml."""
from __future__ import annotations

from pathlib import Path


from .config import RouterConfig, dump_config
from .estimator import QualityEstimator
from .evalset import Evalset
from .selection import calibrate
from .tiers import Tier, tiers_by_cost


def fit(train: Evalset, out_dir: str | Path, *, tiers: list[Tier] | None = None, target_quality: float | None = 0.95,
        target_cost_share: float | None = None, estimator_params: dict | None = None, seed: int = 0,
        bypass_tokens: int = 0, llm: dict | None = None, max_quality_loss: float | None = None,
        confidence: float = 0.9) -> RouterConfig:
    """Calibrate τ on a validation slice, fit the estimator on all of ``train``, write ``out_dir``.

    ``out_dir`` receives ``estimator.json``, ``arrays.npz`` and ``router.yaml`` (tiers, τ, paths),
    ready for ``Router.from_config(out_dir)``. With ``llm={program, lm, fit_n, ...}`` the router LLM
    is configured too, and with ``fit_n > 0`` a fusion of the two is fitted and calibrated
    (``fusion.json``, ``llm.tau``; see :func:`route_switch.fusion.fit_fusion`).

    With ``max_quality_loss`` (ε) the anchored rule's τ is certified by Learn-then-Test
    (:mod:`route_switch.risk`): quality lost versus the best single model ≤ ε with probability
    ≥ ``confidence``. The estimator is then the one fitted without the calibration slice (a
    refit would void the guarantee).
    """
    from .knobs import check_knob

    check_knob("target_quality", target_quality)
    check_knob("target_cost_share", target_cost_share)
    params = estimator_params or {}
    rule, risk = "tau", None
    if max_quality_loss is not None:
        from .risk import calibrate_risk

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
    out = Path(out_dir)
    if llm and llm.get("program") and llm.get("fit_n", 0):
        llm = _fit_llm_fusion(train, out, llm, params, target_quality or 0.95)
    est.save(out)
    cfg = RouterConfig(tiers=list(tiers or tiers_by_cost(est.models_, est.unit_cost_)), estimator=str(out), tau=round(float(tau), 4),
                       bypass_tokens=bypass_tokens, llm=llm, rule=rule, risk=risk)
    dump_config(cfg, out / "router.yaml")
    return cfg


def _fit_llm_fusion(train: Evalset, out: Path, llm: dict, params: dict, target_quality: float) -> dict:
    """Fit and save the fusion; return the ``llm`` section of router.yaml that uses it."""
    from .artifacts import load_program
    from .fusion import fit_fusion

    llm = dict(llm)
    fusion, tau, _report = fit_fusion(train, load_program(llm["program"]), lm_cfg=llm.get("lm"),
                                      n=int(llm.pop("fit_n")), estimator_params=params, target_quality=target_quality)
    out.mkdir(parents=True, exist_ok=True)
    fusion.save(out / "fusion.json")
    llm.update(fusion=str(out / "fusion.json"), tau=round(tau, 4), program=str(Path(llm["program"]).resolve()))
    return llm
