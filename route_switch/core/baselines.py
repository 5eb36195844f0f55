"""Offline baseline routers, compared by ``evaluate``: one small base class, one scoring method, a name registry.

Not to be confused with :class:`route_switch.routing.controller.Router` (the deployable facade behind
``route()``) or :class:`route_switch.llm.router_llm.RouterLLM` (the router LLM program).

Every router scores each candidate model for each prompt (``score -> n x m`` predicted quality);
a selection rule from :mod:`route_switch.core.selection` turns scores into a choice. Routers that
expose a meaningful trade-off knob set ``sweeps = True`` and are evaluated over a τ/λ sweep.
"""
from __future__ import annotations

import re

import numpy as np

from route_switch.core.evalset import Evalset

ROUTERS: dict[str, type["BaseRouter"]] = {}


def register(name: str):
    def deco(cls):
        cls.name = name
        ROUTERS[name] = cls
        return cls
    return deco


class BaseRouter:
    """``fit(train)`` then ``score(prompts)``; ``models_`` and ``unit_cost_`` describe the candidates."""

    name = "base"
    sweeps = False

    def fit(self, train: Evalset) -> "BaseRouter":
        self.models_ = list(train.models)
        self.unit_cost_ = train.costs.mean(axis=0)
        return self

    def score(self, prompts: list[str]) -> np.ndarray:
        raise NotImplementedError


@register("route-switch")
class EstimatorRouter(BaseRouter):
    """The product's quality estimator (frozen encoder + per-model adapters)."""

    sweeps = True

    def __init__(self, **estimator_params):
        self.estimator_params = estimator_params

    def fit(self, train):
        from route_switch.core.estimator import QualityEstimator

        super().fit(train)
        self.estimator_ = QualityEstimator(**self.estimator_params).fit(train.prompts, train.scores, train.models, train.costs)
        return self

    def score(self, prompts):
        return self.estimator_.predict(prompts)


@register("tfidf-lr")
class TfidfLogisticRouter(BaseRouter):
    """Reference baseline: plain TfidfVectorizer + LogisticRegression per model (sklearn defaults)."""

    sweeps = True

    def fit(self, train):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression, Ridge

        super().fit(train)
        self.vec_ = TfidfVectorizer().fit(train.prompts)
        X = self.vec_.transform(train.prompts)
        self.adapters_ = []
        for j in range(train.scores.shape[1]):
            y = train.scores[:, j]
            if np.all((y == 0) | (y == 1)) and 0 < y.mean() < 1:
                self.adapters_.append(LogisticRegression().fit(X, y.astype(int)))
            else:
                self.adapters_.append(Ridge().fit(X, y))
        return self

    def score(self, prompts):
        X = self.vec_.transform(prompts)
        cols = [a.predict_proba(X)[:, 1] if hasattr(a, "predict_proba") else np.clip(a.predict(X), 0, 1)
                for a in self.adapters_]
        return np.column_stack(cols)


# Words that hand-written routing rules typically treat as "needs the big model".
HARD_WORDS = re.compile(r"\b(prove|proof|derive|step[- ]by[- ]step|algorithm|function|code|def|class|"
                        r"integral|equation|probability|calculate|compute|optimi[sz]e|analy[sz]e|explain why|"
                        r"reason|complex)\b|[=^$\\]", re.IGNORECASE)


def tier_models(train: Evalset) -> list[int]:
    """Three model indices (cheap, middle, top) as a team would pick them from a price/quality table.

    cheap = cheapest model; top = best average quality; middle = the Pareto-front model whose
    cost is nearest the geometric mean of the two.
    """
    from route_switch.core.metrics import pareto_front

    cost, qual = train.costs.mean(axis=0), train.scores.mean(axis=0)
    cheap, top = int(np.argmin(cost)), int(np.lexsort((cost, -qual))[0])
    front = [i for i in pareto_front(cost, qual) if i not in (cheap, top)]
    if not front:
        return [cheap, top, top]
    target = np.sqrt(max(cost[cheap], 1e-12) * max(cost[top], 1e-12))
    mid = min(front, key=lambda i: abs(np.log(max(cost[i], 1e-12) / target)))
    return [cheap, int(mid), top]


@register("static-rules")
class StaticRulesRouter(BaseRouter):
    """Length and keyword rules, as teams write by hand: short and plain → cheap, long or 'hard' → top."""

    def __init__(self, short_chars: int = 300, long_chars: int = 1500):
        self.short_chars, self.long_chars = short_chars, long_chars

    def fit(self, train):
        super().fit(train)
        self.tiers_ = tier_models(train)
        return self

    def tier_index(self, prompt: str) -> int:
        """0-based tier (0 = cheapest) the rules give ``prompt``."""
        hits = len(HARD_WORDS.findall(prompt[:5000]))
        if hits >= 3 or len(prompt) > self.long_chars:
            return 2
        if hits >= 1 or len(prompt) > self.short_chars:
            return 1
        return 0

    def score(self, prompts):
        out = np.zeros((len(prompts), len(self.models_)))
        for i, p in enumerate(prompts):
            out[i, self.tiers_[self.tier_index(p)]] = 1.0
        return out


@register("random")
class RandomRouter(BaseRouter):
    """Uniformly random model per query (seeded)."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def score(self, prompts):
        return np.random.default_rng(self.seed).random((len(prompts), len(self.models_)))


def make_router(name: str, **params) -> BaseRouter:
    if name not in ROUTERS:
        raise ValueError(f"unknown router '{name}' (known: {sorted(ROUTERS)})")
    return ROUTERS[name](**params)
