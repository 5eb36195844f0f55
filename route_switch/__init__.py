"""route-switch: send each LLM query to the cheapest model tier that will still answer it well.

Data path: evalset -> estimator / program -> optimise -> artifact -> route().
Heavy dependencies (scikit-learn, DSPy, llama.cpp) load lazily, so importing this package is fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "route": "controller", "Router": "controller", "Decision": "decision",
    "Evalset": "evalset", "load_evalset": "evalset", "save_evalset": "evalset",
    "load_spec": "spec", "Tier": "tiers",
    "QualityEstimator": "estimator",
    "fit": "fitting", "TierFusion": "fusion",
    "select_tau": "selection", "select_lambda": "selection", "calibrate": "selection",
    # integrations: each imports its library (openai, dspy, litellm) only when first used
    "OpenAI": "integrations.openai_client", "AsyncOpenAI": "integrations.openai_client",
    "RoutedLM": "integrations.dspy",
}


def __getattr__(name):
    import importlib

    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    # Submodules (e.g. ``route_switch.evaluate``) are modules, whether or not imported before.
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError:
        raise AttributeError(f"module 'route_switch' has no attribute {name!r}") from None


__all__ = sorted(_EXPORTS)
