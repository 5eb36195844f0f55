"""route-switch: send each LLM query to the cheapest model tier that will still answer it well.

Data path: evalset -> estimator / program -> optimise -> artifact -> route(), in layers (each imports
only from the ones below it; tests/test_layers.py enforces it):

    cli, bench                      the command line: a thin layer over the Python API
    integrations                    OpenAI client drop-in, DSPy LM, LiteLLM strategy
    server | jobs                   the proxy; the weekly re-optimisation job
    labeling                        call the tiers and a judge to score new queries
    optimization                    MIPROv2/GEPA over programs, mined policies, promotion statistics
    routing                         Router (route()), config, fitting, fusion, hot reload, telemetry
    llm                             the router LLM: programs, policies, artifacts, engines
    core                            evalsets, the estimator, selection, metrics, files, errors
Heavy dependencies (scikit-learn, DSPy, llama.cpp) load lazily, so importing this package is fast.
"""
from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "route": "routing.controller", "Router": "routing.controller", "Decision": "core.decision",
    "Evalset": "core.evalset", "load_evalset": "core.evalset", "save_evalset": "core.evalset",
    "load_spec": "core.spec", "Tier": "core.tiers",
    "QualityEstimator": "core.estimator",
    "fit": "routing.fitting", "TierFusion": "routing.fusion",
    "select_tau": "core.selection", "select_lambda": "core.selection", "calibrate": "core.selection",
    # integrations: each imports its library (openai, dspy, litellm) only when first used
    "OpenAI": "integrations.openai_client", "AsyncOpenAI": "integrations.openai_client",
    "RoutedLM": "integrations.dspy",
}


def __getattr__(name):
    import importlib

    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    # Submodules (e.g. ``route_switch.core.evaluate``) are modules, whether or not imported before.
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError:
        raise AttributeError(f"module 'route_switch' has no attribute {name!r}") from None


__all__ = sorted(_EXPORTS)
