"""Run the proxy: one process, or several uvicorn workers on one port, with hot reload.

With ``workers > 1`` uvicorn starts each worker from :func:`app_from_env` (the options travel in
``$ROUTE_SWITCH_SERVE_OPTIONS``; API keys stay in ``$ROUTE_SWITCH_API_KEYS``). Each worker watches
the router's files and reloads itself; ``SIGHUP`` to the single process reloads in place, and to
the uvicorn supervisor of several workers replaces them one by one. Rate limits, the limit on failed
authentications and the ``/metrics`` counters are per process unless the router config has
``state: {redis_url_env: ...}`` (:mod:`route_switch.server.state`).
"""
from __future__ import annotations

import json
import logging
import os

from route_switch.core.errors import ConfigError

OPTIONS_ENV = "ROUTE_SWITCH_SERVE_OPTIONS"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}  # hosts only this machine reaches
log = logging.getLogger("route_switch.server")


def build_app(config_path, *, insecure_no_auth: bool = False, max_body_bytes: int = 1_000_000,
              rate_limit_per_min: float | None = 600, upstream_timeout_s: float = 60.0, log_prompts: bool = False,
              log_level: str = "info", watch_s: float = 2.0, sighup_reload: bool = True, budgets_path=None,
              demo_api_base: str | None = None):
    """The proxy app for a router config path, reloading it when its files change (``watch_s`` > 0).

    ``budgets_path``: a YAML of spend limits (:mod:`route_switch.server.budgets`).
    ``demo_api_base``: serve every tier there, at every (re)load (``serve --demo``)."""
    from route_switch.routing.reload import RouterReloader
    from route_switch.server.app import create_app
    from route_switch.server.auth import KEY_ID_SECRET_ENV, KEYS_ENV, keys_from_env

    check_serve_options(watch_s=watch_s)
    keys = keys_from_env()
    if not keys and not insecure_no_auth:
        raise ConfigError(f"refusing to start without an API key: set {KEYS_ENV}=key1,key2 "
                          "(or pass --insecure-no-auth explicitly)")
    build = None
    if demo_api_base:
        from route_switch.routing.controller import Router
        from route_switch.server.demo import point_tiers_at

        build = lambda path: point_tiers_at(Router.from_config(path), demo_api_base)  # noqa: E731
    reloader = RouterReloader(config_path, build=build)
    problem = reloader.current.check()  # a router that loads but cannot score a query never serves
    if problem:
        raise ConfigError(problem, file=str(config_path))
    budgets = None
    if budgets_path:
        from route_switch.server.budgets import Budgets

        budgets = Budgets.from_file(budgets_path)
        if set(budgets.keys) - {"default"} and not os.environ.get(KEY_ID_SECRET_ENV):
            raise ConfigError(f"budgets per key id need ${KEY_ID_SECRET_ENV}: without it key ids are random per "
                              "process and change at every restart (see `route-switch key-id`)", file=str(budgets_path))
    app = create_app(reloader, api_keys=keys, max_body_bytes=max_body_bytes, rate_limit_per_min=rate_limit_per_min,
                     upstream_timeout_s=upstream_timeout_s, insecure_no_auth=insecure_no_auth,
                     log_prompts=log_prompts, sighup_reload=sighup_reload, budgets=budgets)
    reloader.watch(watch_s)
    _setup_logging(log_level, reloader.current)
    return app


def check_serve_options(**values) -> None:
    """Raise ConfigError naming the option unless ``port`` is 0..65535, ``workers`` >= 1, ``watch_s``
    a finite number >= 0 (those given)."""
    from route_switch.routing.config import check_number

    for key, lo, hi, cast in (("port", 0, 65535, int), ("workers", 1, None, int), ("watch_s", 0, None, float)):
        if key in values:
            check_number(values, key, "", lo, hi, cast, required=True)


def app_from_env():
    """uvicorn factory of one worker process (``--workers N``)."""
    return build_app(**json.loads(os.environ[OPTIONS_ENV]))


def _checked_app(options: dict):
    """``build_app(**options)``, refused when no tier has an ``api_base`` (no chat could be forwarded)."""
    from pathlib import Path

    from route_switch.server.admin import endpoint_problem

    app = build_app(**options)
    problem = endpoint_problem(app.state.proxy.router)
    if problem:
        app.state.proxy.reloader.stop()
        path = Path(options["config_path"])
        raise ConfigError(problem, file=str(path / "router.yaml" if path.is_dir() else path))
    return app


def serve(config_path, host: str = "127.0.0.1", port: int = 8000, *, workers: int = 1, insecure_no_auth: bool = False,
          max_body_bytes: int = 1_000_000, rate_limit_per_min: float | None = 600, upstream_timeout_s: float = 60.0,
          log_prompts: bool = False, log_level: str = "info", watch_s: float = 2.0, budgets_path=None,
          demo: bool = False) -> None:
    """Run the proxy with uvicorn until interrupted. Keys come from ``$ROUTE_SWITCH_API_KEYS``.

    Raises ``ConfigError`` (before binding) without a key unless ``insecure_no_auth``, when the
    router config is invalid, or when no tier has an ``api_base``. ``demo``: every tier is served
    by a stand-in upstream on loopback (:mod:`route_switch.server.demo`), not by a real model.
    """
    import uvicorn

    from route_switch.server.auth import KEY_ID_SECRET_ENV

    check_serve_options(port=port, workers=workers, watch_s=watch_s)

    upstream = None
    if demo:
        from route_switch.server.demo import DemoUpstream

        upstream = DemoUpstream().start()
    options = dict(config_path=str(config_path), insecure_no_auth=insecure_no_auth, max_body_bytes=max_body_bytes,
                   rate_limit_per_min=rate_limit_per_min, upstream_timeout_s=upstream_timeout_s,
                   log_prompts=log_prompts, log_level=log_level, watch_s=watch_s,
                   budgets_path=str(budgets_path) if budgets_path else None,
                   demo_api_base=upstream.url if upstream else None)
    try:  # also in the supervisor: a bad config, a missing key or no endpoint fails here, before binding
        app = _checked_app(options)
    except BaseException:
        if upstream is not None:
            upstream.stop()
        raise
    proxy = app.state.proxy
    if upstream is not None:
        log.warning("demo: every tier is answered by a stand-in upstream at %s, not by a real model", upstream.url)
    if host not in LOOPBACK:
        log.warning("listening on %s: reachable from other machines%s", host,
                    " WITHOUT authentication" if insecure_no_auth else "")
    if proxy.state.shared and not os.environ.get(KEY_ID_SECRET_ENV):
        log.warning("state.redis_url without $%s: replicas on other machines name keys differently and do not "
                    "share their limits", KEY_ID_SECRET_ENV)
    if workers > 1 and not proxy.state.shared:
        per_key = f"{workers} x {rate_limit_per_min:g} requests per minute per key, " if rate_limit_per_min else ""
        log.warning("%d workers without state.redis_url: each worker limits and counts on its own (up to %s%d x the "
                    "failed authentications per address; /metrics shows the counts of the worker that answers it)",
                    workers, per_key, workers)
    log.info("route-switch proxy on http://%s:%d/v1 with %d tiers, router version %s, %d worker(s)", host, port,
             len(proxy.router.tiers), proxy.router.version, workers)
    # log_config=None: uvicorn's loggers go through the redacting JSON handler of build_app
    common = dict(host=host, port=port, log_level=log_level, access_log=False, server_header=False, log_config=None)
    if workers <= 1:
        uvicorn.run(app, **common)
        return
    app.state.proxy.reloader.stop()
    os.environ[OPTIONS_ENV] = json.dumps(options)
    # one key-id secret for all workers, so they count a key in one bucket (and log it alike)
    os.environ.setdefault(KEY_ID_SECRET_ENV, os.urandom(32).hex())
    uvicorn.run("route_switch.server.run:app_from_env", factory=True, workers=workers, **common)


def _setup_logging(level: str, router=None):
    """JSON logs on stderr, with the proxy keys and the tiers' upstream keys redacted."""
    from route_switch.server.auth import keys_from_env
    from route_switch.server.logs import setup

    secrets = set(keys_from_env())
    for t in (router.tiers if router else []):
        env = getattr(t, "api_key_env", None)
        if env and os.environ.get(env):
            secrets.add(os.environ[env])
    setup(level, secrets)
