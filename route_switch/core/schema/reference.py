"""The configuration reference in Markdown, generated from the schemas (``route-switch config-schema``)."""
from __future__ import annotations

import typing
from typing import Literal

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from route_switch.core.schema import _models_in, field_names


def files() -> dict[str, type[BaseModel]]:
    """Every file people write, by the name the reference gives it, and its schema."""
    from route_switch.core.schema.budgets import BudgetsFile
    from route_switch.core.schema.program import ProgramFile
    from route_switch.core.schema.router import RouterFile

    out = {"router.yaml": RouterFile, "budgets (serve --budgets)": BudgetsFile, "routing program": ProgramFile}
    try:
        from route_switch.core.schema.job import JobFile
    except ImportError:  # before the weekly job's schema exists
        return out
    return out | {"weekly job (reoptimize)": JobFile}


def type_name(annotation) -> str:
    """A reader's name for a field's type: ``list of TierSpec``, ``number or null``, ``'hash' | 'full'``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(type_name(a) for a in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "mapping",
             type(None): "null", typing.Any: "any"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(f) -> str:
    if f.is_required():
        return "required"
    v = f.default_factory() if f.default_factory is not None else f.default
    if isinstance(v, BaseModel):
        return "see below"
    return "" if v is None or v is PydanticUndefined else f"`{v!r}`"


def rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) of every field of ``model`` and its sections."""
    out = []
    for name, f in model.model_fields.items():
        if f.exclude:
            continue
        key = f"{prefix}{f.alias or name}"
        out.append((key, type_name(f.annotation).replace("|", "\\|"), _default(f), f.description or ""))
        for inner in _models_in(f.annotation)[:1]:
            kind = type_name(f.annotation)
            sep = "[]." if kind.startswith("list of") else ".<name>." if kind.startswith("mapping of") else "."
            out += rows(inner, key + sep)
    return out


def markdown() -> str:
    """The whole reference: one section per file, one table row per key."""
    parts = ["# Configuration reference", "",
             "Generated from the schemas (`route_switch.core.schema`) by `route-switch config-schema`. "
             "Unknown keys are refused; errors name the file and the field."]
    for title, model in files().items():
        parts += ["", f"## {title}", "", (model.__doc__ or "").strip(), "", "| key | type | default | description |",
                  "|---|---|---|---|"]
        parts += [f"| `{k}` | {t} | {d} | {desc.replace('|', '/')} |" for k, t, d, desc in rows(model)]
    return "\n".join(parts) + "\n"


__all__ = ["files", "markdown", "rows", "type_name", "field_names"]
