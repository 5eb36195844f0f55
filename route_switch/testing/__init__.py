"""FAKE servers and data for tests and benchmarks (deterministic, loopback only); the product never imports this.

:mod:`.upstreams` holds OpenAI-compatible fake upstreams on real sockets (one that answers or misbehaves
on demand, one that fails at random for soak runs); :mod:`.synthetic` the synthetic evalset;
:mod:`.litellm_proxy` starts the real LiteLLM proxy offline on loopback; :mod:`.processes` stops
the servers they start.
"""
