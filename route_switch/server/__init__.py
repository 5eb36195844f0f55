"""OpenAI-compatible routing proxy: ``create_app(router, ...)`` and ``serve(config_path, ...)``.

Needs the ``serve`` extra (starlette, uvicorn, httpx); imported lazily so ``import route_switch`` stays light.
"""
from __future__ import annotations


def __getattr__(name):
    if name == "create_app":
        from route_switch.server.app import create_app

        return create_app
    if name == "keys_from_env":
        from route_switch.server.auth import keys_from_env

        return keys_from_env
    if name == "serve":
        from route_switch.server.run import serve

        return serve
    raise AttributeError(f"module 'route_switch.server' has no attribute {name!r}")


__all__ = ["create_app", "serve", "keys_from_env"]
