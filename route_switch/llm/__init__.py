"""Router-LLM layer: a small LLM that picks the model tier for a query.

Import-light on purpose: dspy, llama_cpp and litellm are imported inside
functions only, so `import route_switch.llm` stays fast.

Public API:
    model_files.ensure_local_model(cache_dir=None) -> Path
    lm.make_lm(cfg, labels=None) -> dspy.LM
    engines.LlamaCppEngine; fakes.FakeRouterEngine (a FAKE for tests)
    tokens.count_tokens(text, tokenizer=None) -> int
"""
