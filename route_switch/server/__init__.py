"""OpenAI-compatible routing proxy: ``create_app(router, ...)`` and ``serve(config_path, ...)``.

Needs the ``serve`` extra (starlette, uvicorn, httpx); imported lazily so ``import route_switch`` stays light.
"""
from __future__ import annotations


def __getattr__(name):
    if name in ("create_app", "keys_from_env"):
        from route_switch.server import app

        return getattr(app, name)
    if name == "serve":
        from route_switch.server.run import serve

        return serve
    raise AttributeError(f"module 'route_switch.server' has no attribute {name!r}")


__all__ = ["create_app", "serve", "keys_from_env"]
