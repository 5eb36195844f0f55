"""A disk cache around any DSPy custom engine: an unchanged request never reaches the model twice.

Entries are JSON text in a ``diskcache.Cache`` keyed by a SHA-256 of (namespace, system prompt,
messages, generation config). diskcache stores ``str`` values as text, so reading the cache
never unpickles anything. A corrupted cache directory is reported and replaced by a fresh one.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
from pathlib import Path

log = logging.getLogger("route_switch")


def request_key(namespace: str, request) -> str:
    from route_switch.llm.engines import _request_messages

    payload = {"ns": namespace, "messages": _request_messages(request), "config": repr(request.config)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()


def open_cache(directory: str | Path):
    """Open (or create) a diskcache; a corrupted one is moved aside and recreated."""
    import diskcache

    d = Path(directory)
    try:
        c = diskcache.Cache(str(d))
        c.get("__probe__")
        return c
    except Exception as e:  # sqlite "file is not a database", permissions, ...
        broken = d.with_name(d.name + ".corrupt")
        log.warning("LM cache at %s is unreadable (%s); moved to %s and starting empty", d, e, broken)
        shutil.rmtree(broken, ignore_errors=True)
        d.rename(broken)
        return diskcache.Cache(str(d))


def get_json(cache, key: str) -> dict | None:
    """A cached JSON object, or None when missing; a corrupt entry is logged and treated as missing."""
    raw = cache.get(key)
    if not isinstance(raw, str):
        return None
    try:
        d = json.loads(raw)
    except json.JSONDecodeError:
        d = None
    if not isinstance(d, dict):
        log.warning("ignoring a corrupt cache entry %s", key[:12])
        return None
    return d


class CachedEngine:
    """Wraps ``inner`` (a ``complete(Request) -> Response`` engine) with a persistent cache.

    ``hits`` / ``misses`` count cache use, so a run can prove it made zero model calls.
    """

    def __init__(self, inner, directory: str | Path, namespace: str):
        self.inner, self.namespace = inner, namespace
        self.directory = str(directory)
        self.cache = open_cache(directory)
        self.hits = self.misses = 0
        self._lock = threading.Lock()
        self.forces_layout = getattr(inner, "forces_layout", False)
        if hasattr(inner, "tier_probs"):
            self.tier_probs = self._cached_tier_probs

    def _cached_tier_probs(self, messages: list[dict]) -> list[float]:
        """The inner engine's tier distribution for ``messages``, from the cache when asked before."""
        payload = {"ns": self.namespace, "tier_probs": messages}
        key = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False)
                             .encode("utf-8", "surrogatepass")).hexdigest()
        d = get_json(self.cache, key)
        if d is not None and isinstance(d.get("probs"), list):
            with self._lock:
                self.hits += 1
            return [float(x) for x in d["probs"]]
        probs = self.inner.tier_probs(messages)
        self.cache.set(key, json.dumps({"probs": [float(x) for x in probs]}))
        with self._lock:
            self.misses += 1
        return probs

    def __deepcopy__(self, memo):  # DSPy copies modules; the cache and the model are shared
        return self

    def complete(self, request):
        from route_switch.llm.engines import _response

        key = request_key(self.namespace, request)
        d = get_json(self.cache, key)
        if d is not None and isinstance(d.get("text"), str):
            with self._lock:
                self.hits += 1
            return _response(d["text"], d.get("model", self.namespace), d.get("in"), d.get("out"))
        resp = self.inner.complete(request)
        text = "".join(getattr(p, "text", "") or "" for p in resp.message.parts)
        usage = getattr(resp, "usage", None)
        self.cache.set(key, json.dumps({"text": text, "model": resp.model,
                                        "in": getattr(usage, "input_tokens", None),
                                        "out": getattr(usage, "output_tokens", None)}))
        with self._lock:
            self.misses += 1
        return resp

    def __getattr__(self, name):  # everything else (stream, close, labels, ...) from the inner engine
        return getattr(self.inner, name)


def lm_identity(lm_cfg: dict) -> str:
    kind = lm_cfg.get("kind", "local")
    if kind == "local":
        from route_switch.llm.model_files import model_spec

        return f"local:{lm_cfg.get('model_path') or model_spec(lm_cfg.get('model')).sha256[:16]}"
    return f"{kind}:{lm_cfg.get('model')}@{lm_cfg.get('api_base', '')}:{lm_cfg.get('mode', '')}"


def cached_lm(lm_cfg: dict, labels, cache_dir: Path, max_tokens: int | None = None):
    """``make_lm(lm_cfg)`` with its engine wrapped by the disk cache."""
    import dspy

    from route_switch.llm.lm import make_lm

    cfg = dict(lm_cfg)
    if max_tokens:
        cfg["max_tokens"] = max_tokens
    lm = make_lm(cfg, labels=labels)
    engine = getattr(lm, "engine", None)
    if engine is None or isinstance(engine, str):
        log.warning("LM %s has no custom engine: its calls are not cached", lm.model)
        return lm, None
    cached = CachedEngine(engine, cache_dir, lm_identity(lm_cfg))
    kwargs = {k: v for k, v in lm.kwargs.items() if k in ("temperature", "max_tokens")}
    return dspy.LM(lm.model, engine=cached, cache=False, num_retries=0, **kwargs), cached
