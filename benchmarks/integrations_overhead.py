"""Route-switch's added time per request in the integrations: the ``openai`` drop-in, ``litellm.Router`` and the LiteLLM proxy.

    python benchmarks/integrations_overhead.py [--n 300] [--cache-off] [--target openai|litellm-router|litellm-proxy]

Sends ``n`` chat completions to one FAKE upstream on loopback (``route_switch.testing``), interleaved,
one at a time (the upstream with TCP_NODELAY), the plain way and the routed way of the target:

* ``openai``: the plain ``openai`` client vs ``route_switch.OpenAI`` whose tiers all point at the upstream;
* ``litellm-router``: ``litellm.Router.completion`` to a plain model group vs to the group routed by
  ``RouteSwitchStrategy`` (one deployment per tier, all at the upstream);
* ``litellm-proxy``: the real LiteLLM proxy (``litellm --config``, offline, extra ``litellm-proxy``)
  called with the ``openai`` client, model ``small`` vs ``route-switch/prod`` (``RouteSwitchHook``; every
  tier group at the upstream).

Reports the median and p90 milliseconds of each, the difference of the medians (what routing adds on
top of the library's own overhead and the HTTP round trips) and, where the decision is visible to the
caller, the median ``route()`` latency. Queries cycle through the synthetic set's test split;
``--cache-off`` turns the decision cache off, so every request is scored. Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def targets(target: str, router_dir: Path, up_url: str, cache_off: bool, stack):
    """(plain call, routed call returning the route() ms or None) of ``target``, set up against ``up_url``."""
    import openai

    from route_switch.routing.controller import Router
    from route_switch.core.tiers import Tier

    base = Router.from_config(router_dir)
    router = Router(tiers=[Tier(name=t.name, model=t.model, api_base=up_url) for t in base.tiers],
                    estimator=base.estimator, tau=base.tau, cache_size=0 if cache_off else 10_000)
    if target == "openai":
        import route_switch

        plain = openai.OpenAI(base_url=up_url, api_key="none", max_retries=0)
        routed = route_switch.OpenAI(router=router)
        return (lambda msgs: plain.chat.completions.create(model="small", messages=msgs),
                lambda msgs: routed.chat.completions.create(model="router", messages=msgs).route_switch_decision.latency_ms)
    if target == "litellm-router":
        import litellm

        from route_switch.integrations.litellm import RouteSwitchStrategy

        params = {"model": "openai/fake", "api_base": up_url, "api_key": "none"}
        llm_router = litellm.Router(model_list=[{"model_name": "plain", "litellm_params": params}] + [
            {"model_name": "route-switch", "litellm_params": params, "model_info": {"route_switch_tier": i + 1}}
            for i in range(len(router.tiers))])
        RouteSwitchStrategy(router).install(llm_router)

        def routed(msgs):
            meta = {}
            llm_router.completion(model="route-switch", messages=msgs, metadata=meta)
            return meta["route_switch"]["route_latency_ms"]

        return lambda msgs: llm_router.completion(model="plain", messages=msgs), routed
    import tempfile

    import yaml

    from route_switch.testing.litellm_proxy import litellm_proxy

    d = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    cfg = yaml.safe_load((router_dir / "router.yaml").read_text())
    cfg.update(estimator=str((router_dir / cfg["estimator"]).resolve()), cache_size=0 if cache_off else 10_000)
    (d / "router.yaml").write_text(yaml.safe_dump(cfg))
    (d / "hook.py").write_text("from route_switch.integrations.litellm_proxy import RouteSwitchHook\n"
                               f"hook = RouteSwitchHook(routers={{'prod': {str(d)!r}}})\n")
    (d / "config.yaml").write_text(yaml.safe_dump({
        "model_list": [{"model_name": t.name, "litellm_params": {"model": "openai/fake", "api_base": up_url,
                                                                 "api_key": "none"}} for t in router.tiers],
        "litellm_settings": {"callbacks": "hook.hook"},
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}}))
    url = stack.enter_context(litellm_proxy(d / "config.yaml", env={"LITELLM_MASTER_KEY": "sk-bench"}))
    client = openai.OpenAI(base_url=url + "/v1", api_key="sk-bench", max_retries=0)

    def routed(msgs):  # the decision stays inside the proxy: no route() time to report
        client.chat.completions.create(model="route-switch/prod", messages=msgs)

    return lambda msgs: client.chat.completions.create(model=router.tiers[0].name, messages=msgs), routed


def main(argv=None) -> None:
    import contextlib

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--cache-off", action="store_true", help="decision cache off: every request is scored")
    ap.add_argument("--target", choices=["openai", "litellm-router", "litellm-proxy"], default="openai")
    a = ap.parse_args(argv)

    from route_switch.testing.upstreams import FakeUpstream, QuietHandler

    # The stdlib server writes headers and body in two sends: with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms on Linux), which would swamp what is measured here.
    QuietHandler.disable_nagle_algorithm = True

    from _common import fitted_router_dir

    router_dir, queries = fitted_router_dir(None)
    with contextlib.ExitStack() as stack:
        up = stack.enter_context(FakeUpstream(text="ok"))
        plain, routed = targets(a.target, router_dir, up.url, a.cache_off, stack)
        plain_ms, routed_ms, route_ms = [], [], []
        for i in range(a.n + 20):  # the first 20 of each warm up connections and caches
            msgs = [{"role": "user", "content": queries[i % len(queries)]}]
            t0 = time.perf_counter()
            plain(msgs)
            t1 = time.perf_counter()
            ms = routed(msgs)
            t2 = time.perf_counter()
            if i >= 20:
                plain_ms.append((t1 - t0) * 1000)
                routed_ms.append((t2 - t1) * 1000)
                if ms is not None:
                    route_ms.append(ms)
    res = {"n": a.n, "target": a.target, "decision_cache": not a.cache_off,
           "plain_ms": {"p50": round(statistics.median(plain_ms), 3), "p90": round(pct(plain_ms, 0.9), 3)},
           "routed_ms": {"p50": round(statistics.median(routed_ms), 3), "p90": round(pct(routed_ms, 0.9), 3)},
           "added_ms_p50": round(statistics.median(routed_ms) - statistics.median(plain_ms), 3),
           "route_ms_p50": round(statistics.median(route_ms), 3) if route_ms else None,
           "load_average": round(os.getloadavg()[0], 2)}
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
