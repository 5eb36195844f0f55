"""Build the router's dspy.LM from a YAML-able config.

    {kind: local}                       embedded Qwen2.5-Coder-0.5B GGUF, in-process llama.cpp
        optional: model_path, n_ctx (4096), n_threads (2; 1 is faster on a busy machine), n_batch (512), cache_dir,
        prefix_state (true: keep the evaluated prompt prefix on disk next to the model,
        so a new process skips re-evaluating it), reuse_prefix (true; false = benchmark only)
    {kind: openai, model, api_base, api_key_env, max_tokens, timeout_s, top_logprobs}
        any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp server), called with the
        `openai` client (OpenAIChatEngine): it sends `max_tokens`, asks for logprobs to get a
        probability per tier, and degrades to the written label where an endpoint gives none.
        The API key is read only from the environment variable named by api_key_env.
    {kind: fake, mode, fixed_label, delay_s}   FakeRouterEngine (route_switch.llm.fakes), for tests
"""
from __future__ import annotations

from pathlib import Path

from route_switch.core.errors import ConfigError


class LMConfigError(ConfigError):
    """The LM config is invalid (unknown kind, missing field, unset key variable)."""


def make_lm(cfg: dict | None = None, labels=("1", "2", "3")):
    """Return a dspy.LM for `cfg` (temperature 0, no DSPy response cache, no retries)."""
    import dspy

    cfg = dict(cfg or {"kind": "local"})
    kind = cfg.get("kind", "local")
    labels = tuple(str(x) for x in (labels or ("1", "2", "3")))
    if kind == "local":
        from route_switch.llm.engines import LlamaCppEngine
        from route_switch.llm.model_files import ensure_local_model

        from route_switch.llm.model_files import default_cache_dir

        path = cfg.get("model_path") or ensure_local_model(cfg.get("cache_dir"), cfg.get("model"))
        kv_dir = None
        if cfg.get("prefix_state", True):
            kv_dir = str((Path(cfg["cache_dir"]).expanduser() if cfg.get("cache_dir") else default_cache_dir())
                         .parent / "prefix-state")
        engine = LlamaCppEngine(str(path), labels=labels, n_ctx=int(cfg.get("n_ctx", 4096)),
                                n_threads=int(cfg.get("n_threads", 2)), n_batch=int(cfg.get("n_batch", 512)),
                                reuse_prefix=bool(cfg.get("reuse_prefix", True)), prefix_state_dir=kv_dir)
        return dspy.LM("local/qwen2.5-coder-0.5b-instruct-q4_k_m", engine=engine, temperature=0.0,
                       max_tokens=int(cfg.get("max_tokens", 16)), cache=False, num_retries=0)
    if kind == "fake":
        from route_switch.llm.fakes import FakeRouterEngine

        engine = FakeRouterEngine(labels=labels, mode=cfg.get("mode", "rule"), fixed_label=cfg.get("fixed_label"),
                                  delay_s=float(cfg.get("delay_s", 0.0)))
        return dspy.LM("local/fake-router", engine=engine, temperature=0.0, max_tokens=16, cache=False,
                       num_retries=0)
    if kind == "openai":
        model = cfg.get("model")
        if not isinstance(model, str) or not model:
            raise LMConfigError("lm config kind=openai needs 'model'")
        from route_switch.core.tiers import api_key_from_env

        # without api_key_env: local servers accept any key
        api_key = api_key_from_env(cfg.get("api_key_env"), "lm config", LMConfigError) or "none"
        from route_switch.llm.openai_engine import OpenAIChatEngine

        engine = OpenAIChatEngine(model, cfg.get("api_base"), api_key, labels=labels,
                                  timeout_s=float(cfg.get("timeout_s", 10.0)), max_tokens=int(cfg.get("max_tokens", 16)),
                                  top_logprobs=int(cfg.get("top_logprobs", 10)))
        return dspy.LM(f"endpoint/{model}", engine=engine, temperature=0.0, max_tokens=int(cfg.get("max_tokens", 16)),
                       cache=False, num_retries=int(cfg.get("num_retries", 0)))
    raise LMConfigError(f"unknown lm kind {kind!r}; expected local, openai or fake")
