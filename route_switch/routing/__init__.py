"""Routing: the Router behind route(), its config, fitting, fusion of the router LLM with the
estimator, hot reload and telemetry. Uses core and llm; knows nothing of the proxy or the jobs."""
