"""Hot reload: pick up a promoted estimator, program or router config without a restart.

:class:`RouterReloader` owns the current :class:`~route_switch.routing.controller.Router` built from a config
path. ``reload()`` builds a complete new router next to the old one and swaps one reference, so a
query is routed wholly by the old or wholly by the new version; a config, estimator or program that
fails to load (or that changes while it is being read, e.g. in the middle of the weekly job's folder
swap) leaves the current router in place, and the next poll tries again. ``watch(poll_s)`` polls the
files' identity (inode, mtime, size); the proxy also reloads on ``SIGHUP`` and ``POST /admin/reload``.

``version`` is a short content hash of every file the router reads (``router.yaml``, the estimator's
files, the router LLM program): the proxy answers it in ``X-Route-Switch-Version``.

    from route_switch.routing.reload import RouterReloader
    router = RouterReloader("estimators/prod").watch(2.0)   # route() always uses the newest good version
    router.route("What is 17 * 23?")
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from route_switch.routing.version import config_version, fingerprint

log = logging.getLogger("route_switch")


class RouterReloader:
    """The current router for a config path, replaced atomically when the files change.

    ``on_swap(new_router)`` is called after each successful swap (the proxy points its handlers at
    the new router there). Attribute access and ``route``/``route_batch`` go to the current router.
    """

    def __init__(self, path: str | Path, *, on_swap=None, build=None):
        from route_switch.routing.controller import Router

        self.path = Path(path)
        self.on_swap = on_swap
        self._build = build or Router.from_config
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reloads, self.failures, self.last_error = 0, 0, None
        self._fp, self.current, self.version = self._load()  # the first load may raise: nothing to keep

    def _load(self):
        fp = fingerprint(self.path)
        router = self._build(self.path)
        version = getattr(router, "version", "") or config_version(self.path)  # from_config hashes the files
        if fingerprint(self.path) != fp:
            raise RuntimeError("the router's files changed while they were read; will try again")
        router.version = version
        return fp, router, version

    def reload(self, force: bool = False) -> dict:
        """Rebuild and swap in the router if its files changed (always with ``force``); never raises.

        Returns ``{"reloaded", "version", "previous"}`` plus ``"error"`` when the new files could
        not be loaded (the current router stays).
        """
        with self._lock:  # one reload at a time; routing never waits for this lock
            previous = self.version
            try:
                if not force and fingerprint(self.path) == self._fp:
                    return {"reloaded": False, "version": previous, "previous": previous}
                fp, router, version = self._load()
            except Exception as e:
                self.failures += 1
                error = f"{type(e).__name__}: {e}"
                if error != self.last_error:  # the watcher retries every poll: say it once per new error
                    log.warning("router reload from %s failed, keeping version %s: %s", self.path, previous, error)
                self.last_error = error
                return {"reloaded": False, "version": previous, "previous": previous, "error": self.last_error}
            self._fp, self.current, self.version = fp, router, version  # the swap: one reference
            self.reloads += 1
            self.last_error = None
            if self.on_swap is not None:
                self.on_swap(router)
            if version != previous:
                log.info("router reloaded from %s: version %s -> %s", self.path, previous, version)
            return {"reloaded": True, "version": version, "previous": previous}

    def watch(self, poll_s: float = 2.0) -> "RouterReloader":
        """Poll the files every ``poll_s`` seconds in a daemon thread and reload on change."""
        if self._thread is None and poll_s and poll_s > 0:
            def loop():
                while not self._stop.wait(poll_s):
                    self.reload()
            self._thread = threading.Thread(target=loop, name="route-switch-reload", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def route(self, query, **kw):
        return self.current.route(query, **kw)

    def route_batch(self, queries, **kw):
        return self.current.route_batch(queries, **kw)

    def __getattr__(self, name):  # tiers, tau, estimator, ... of the current router
        if name == "current":  # not set yet (failed __init__): no recursion
            raise AttributeError(name)
        return getattr(self.current, name)

