"""Fusion of the estimator with the router LLM's tier distribution, and the LLM path of route()."""
from __future__ import annotations

import json

import numpy as np
import pytest

from route_switch.routing.controller import Router
from route_switch.core.errors import ArtifactError
from route_switch.core.estimator import QualityEstimator
from route_switch.routing.fusion import TierFusion, llm_quality
from route_switch.llm.router_llm import TierVote
from route_switch.core.tiers import Tier

TIERS = [Tier("small", "small"), Tier("medium", "medium"), Tier("large", "large")]


def _signals(n=600, seed=0):
    """Synthetic slice: the needed tier is known to a sharp LLM and to a noisy estimator."""
    rng = np.random.default_rng(seed)
    need = rng.integers(0, 3, n)                       # 0-based cheapest adequate tier
    scores = (np.arange(3)[None, :] >= need[:, None]).astype(float)
    llm = np.full((n, 3), 0.1)
    llm[np.arange(n), need] = 0.8                      # a sharp, right-most-of-the-time LLM
    est = np.clip(0.5 + 0.2 * (scores - 0.5) + rng.normal(0, 0.25, (n, 3)), 0.01, 0.99)  # a weak estimator
    return est, llm, scores


COSTS = np.array([1.0, 3.0, 10.0])


def test_cv_weight_follows_the_informative_signal():
    est, llm, scores = _signals()
    costs = np.tile(COSTS, (len(scores), 1))
    sharp = TierFusion().fit(est, llm, scores, costs)  # the LLM is sharp, the estimator weak
    assert sharp.w_ >= 0.75 and set(sharp.cv_scores_) == {0.0, 0.25, 0.5, 0.75, 1.0}
    good = np.clip(0.5 + 0.45 * (scores - 0.5) + np.random.default_rng(2).normal(0, 0.05, scores.shape), 0.01, 0.99)
    noise = np.random.default_rng(1).dirichlet([1, 1, 1], len(est))
    quiet = TierFusion().fit(good, noise, scores, costs)  # a sharp estimator, an LLM that is noise
    assert quiet.w_ <= 0.25
    assert TierFusion().fit(est, llm, scores, costs).to_dict()["w"] == sharp.w_
    with pytest.raises(ValueError, match="costs"):
        TierFusion().fit(est, llm, scores)


def test_one_se_rule_prefers_the_middle_unless_an_extreme_clearly_wins():
    from route_switch.routing.fusion import one_se_weight

    noisy = {0.0: [0.80, 0.70, 0.82, 0.71, 0.80], 0.5: [0.80, 0.70, 0.81, 0.72, 0.79], 1.0: [0.6] * 5}
    assert one_se_weight(noisy) == 0.5  # 0.0 is best on average, but not by more than the noise
    clear = {0.0: [0.80, 0.81, 0.82, 0.80, 0.81], 0.5: [0.70, 0.71, 0.72, 0.70, 0.71], 1.0: [0.6] * 5}
    assert one_se_weight(clear) == 0.0


def test_llm_quality_is_the_cumulative_distribution():
    q = llm_quality([[0.2, 0.5, 0.3]])
    assert np.allclose(q, [[0.2, 0.7, 1.0]])
    assert np.all(np.diff(llm_quality(np.random.default_rng(0).dirichlet([1, 1, 1], 50)), axis=1) >= -1e-12)


def test_fusion_learns_from_the_informative_signal():
    est, llm, scores = _signals()
    brier = lambda p: float(((p - scores[400:]) ** 2).mean())  # noqa: E731
    for method in ("mix", "stack"):
        f = TierFusion(method=method, w=0.5).fit(est[:400], llm[:400], scores[:400])
        assert brier(f.predict(est[400:], llm[400:])) < brier(est[400:]) - 0.02, method
    f = TierFusion(method="stack").fit(est[:400], llm[:400], scores[:400])
    assert f.coef_.shape == (3, 2) and np.all(f.coef_[:2, 1] > 0)  # the LLM column carries weight
    # the mix is exactly (1 - w) * estimator + w * P(tier k is enough)
    m = TierFusion(w=0.25).fit(est, llm, scores)
    assert np.allclose(m.predict(est, llm), 0.75 * est + 0.25 * llm_quality(llm))
    # stacking does not invent signal where the LLM is noise
    noise = np.random.default_rng(1).dirichlet([1, 1, 1], len(est))
    g = TierFusion(method="stack").fit(est[:400], noise[:400], scores[:400])
    assert brier(g.predict(est[400:], noise[400:])) < brier(est[400:]) + 0.01
    with pytest.raises(ValueError):
        TierFusion(method="vote").fit(est, llm, scores)


@pytest.mark.parametrize("method", ["mix", "stack"])
def test_fusion_roundtrip_and_bad_files(tmp_path, method):
    est, llm, scores = _signals(100)
    f = TierFusion(method=method).fit(est, llm, scores, np.tile(COSTS, (len(scores), 1)))
    p = f.save(tmp_path / "fusion.json")
    g = TierFusion.load(p, n_tiers=3)
    assert np.allclose(g.predict(est, llm), f.predict(est, llm), atol=1e-5) and g.method == method
    with pytest.raises(ArtifactError, match="router has 4"):
        TierFusion.load(p, n_tiers=4)
    doc = json.loads(p.read_text())
    bad = [{**doc, "format": "x"}, [1], {**doc, "method": "vote"}, {**doc, "w": 2}]
    bad += [{**doc, "coef": [[1, "x"]]}, {**doc, "coef": [[float("nan"), 1]] * 3}] if method == "stack" else \
        [{k: v for k, v in doc.items() if k != "n_tiers"}]
    for b in bad:
        p.write_text(json.dumps(b))
        with pytest.raises(ArtifactError, match="fusion.json"):
            TierFusion.load(p)
    p.write_text("{not json")
    with pytest.raises(ArtifactError, match="fusion.json"):
        TierFusion.load(p)


class FakeVoter:
    """A FAKE router LLM with a fixed tier distribution (no model involved)."""

    def __init__(self, probs):
        self.probs = tuple(probs)

    def vote(self, query, timeout_s=None, deadline=None):
        return TierVote(self.probs)


@pytest.fixture(scope="module")
def estimator(synthetic):
    return QualityEstimator().fit(synthetic.prompts, synthetic.scores, synthetic.models, synthetic.costs)


def test_the_knob_works_on_the_llm_path(estimator):
    r = Router(TIERS, estimator, llm=FakeVoter([0.2, 0.3, 0.5]), cache_size=0)
    assert r.route("Explain a hash map.", tau=1.0).tier == 1            # τ = 1: always the cheapest
    d = r.route("Explain a hash map.", tau=0.0)                         # τ = 0: the best predicted (top)
    assert d.path == "llm" and d.tier == 3 and d.tier_probs == [0.2, 0.3, 0.5]
    assert r.route("Explain a hash map.", tau=0.55).tier == 2           # cdf 0.5 / 0.8 / 1.0
    assert r.route("Explain a hash map.", lam=0.0).tier == 3 and r.route("Explain a hash map.", lam=5.0).tier == 1


def test_fused_path_uses_both_and_falls_back(estimator, synthetic):
    est_pred = estimator.predict(synthetic.prompts)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], len(synthetic))
    fusion = TierFusion().fit(est_pred, probs, synthetic.scores, synthetic.costs)
    r = Router(TIERS, estimator, llm=FakeVoter([0.1, 0.1, 0.8]), fusion=fusion, cache_size=0, tau=0.05)
    d = r.route("Prove that sqrt(2) is irrational.")
    expect = fusion.predict(estimator.predict(["Prove that sqrt(2) is irrational."]), np.array([[0.1, 0.1, 0.8]]))[0]
    assert d.path == "llm" and "fused" in d.reason
    assert np.allclose(list(d.predicted_quality.values()), expect, atol=1e-4)

    class Down:
        def vote(self, query, timeout_s=None, deadline=None):
            raise ConnectionError("down")

    r2 = Router(TIERS, estimator, llm=Down(), fusion=fusion, cache_size=0)
    d2 = r2.route("Prove that sqrt(2) is irrational.")
    assert d2.path == "estimator" and "failed" in d2.reason and d2.tier_probs is None


def test_llm_knob_from_config_is_used_unless_the_call_gives_one(estimator):
    r = Router(TIERS, estimator, llm=FakeVoter([0.2, 0.3, 0.5]), cache_size=0, tau=0.0, llm_tau=1.0)
    assert r.route("Explain a hash map.").tier == 1          # llm_tau = 1 -> cheapest
    assert r.route("Explain a hash map.", tau=0.0).tier == 3  # a per-call knob wins


def test_fit_with_program_writes_a_fused_router(tmp_path, monkeypatch, capsys):
    """`fit --program` routes a slice with the router LLM, fits the fusion, and route() uses it (FAKE LM)."""
    from conftest import synthetic_records

    from route_switch.cli import main
    from route_switch.routing.config import load_config
    from route_switch.core.evalset import from_records, save_evalset

    monkeypatch.setenv("ROUTE_SWITCH_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "syn.parquet"
    save_evalset(from_records(synthetic_records(300)), data)
    out = tmp_path / "router"
    assert main(["fit", "--data", str(data), "--models", "small,medium,large", "--out", str(out),
                 "--program", "programs/default.yaml", "--llm-fusion-n", "60", "--lm", "fake"]) == 0
    cfg = load_config(out)
    assert cfg.llm["lm"] == {"kind": "fake"} and 0 <= cfg.llm["tau"] <= 1
    assert TierFusion.load(cfg.llm["fusion"], n_tiers=3).n_fit_ == 60
    r = Router.from_config(out)
    d = r.route("Prove that the sum of the first 12 odd numbers is a perfect square, step by step.")
    assert d.path == "llm" and "fused" in d.reason and len(d.tier_probs) == 3
    assert "router LLM fused" in capsys.readouterr().out
    # the bypass counts tokens one way from the first call on, whether or not a model has loaded
    from route_switch.core.tokens import estimate_tokens

    assert r.count_tokens is estimate_tokens
