"""Schemas of the files people write (router.yaml, budgets, programs, the weekly job): pydantic models.

One model per file, unknown keys refused, and one translation of pydantic's errors into the
package's own: the file, the dotted field (``tiers[0].price_in``) and a short message, with a
"did you mean" for a misspelt key. Loaders import this lazily: pydantic is never on ``route()``'s path.
"""
from __future__ import annotations

import difflib
import typing
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from route_switch.core.errors import ConfigError, InputError

__all__ = ["Model", "validate", "unknown_key_error", "Text", "field_names", "Field"]


class Model(BaseModel):
    """A section of a config file: unknown keys refused, no type coercion ("1" is not 1), no NaN/inf."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, populate_by_name=True)


def _scalar_text(v):
    # YAML reads `model: 4o` as a string but `name: 1` as an int: a name is still text.
    return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


Text = Annotated[str, BeforeValidator(_scalar_text)]


def field_names(model: type[BaseModel]) -> list[str]:
    """The keys a file may hold at this level (aliases, e.g. ``lambda``), in declaration order."""
    return [f.alias or name for name, f in model.model_fields.items() if not f.exclude]


def unknown_key_error(key, known, file: str | None, where: str = "", error: type[InputError] = ConfigError):
    """An error for an unknown key, suggesting the closest known one ("did you mean 'selection'?")."""
    known = list(known)
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
    return error(f"unknown key: {hint}", file=file, field=f"{where}{key}")


def _models_in(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The model a location points into (list indices and mapping keys stay in the same model)."""
    for part in loc:
        fields = {f.alias or n: f for n, f in model.model_fields.items()}
        if isinstance(part, str) and part in fields:
            inner = _models_in(fields[part].annotation)
            if inner:
                model = inner[0]
    return model


# pydantic names the member of a union that failed ("lambda.float"): not a key of the file
_UNION_TAGS = {"int", "float", "str", "bool", "dict", "list", "none"}


def dotted(loc: tuple, where: str = "") -> str:
    out = where
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: dict) -> str:
    msg = err["msg"]
    if msg.startswith(("Value error, ", "Assertion failed, ")):
        return msg.split(", ", 1)[1]
    if err["type"] == "missing":
        return "is required"
    msg = msg.replace("Input should be", "must be").replace("List should have", "must have")
    if "got" not in msg:
        msg += f", got {repr(err.get('input'))[:60]}"
    return msg


def translate(exc: ValidationError, model: type[BaseModel], file: str | None, where: str = "",
              error: type[InputError] = ConfigError) -> InputError:
    """The first of pydantic's errors as ``error`` naming the file and the dotted field; an unknown key
    first, since it is often a misspelling of the key reported missing."""
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(p for p in err["loc"] if p not in _UNION_TAGS and not (isinstance(p, str) and "[" in p))
    if err["type"] == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        return unknown_key_error(loc[-1], field_names(parent), file, dotted(loc[:-1], where) + "." if loc[:-1] or where
                                 else "", error)
    return error(_message(err), file=file, field=dotted(loc, where) or None)


def validate(model: type[BaseModel], raw: Any, file: str | None, *, where: str = "",
             error: type[InputError] = ConfigError, context: dict | None = None):
    """``raw`` (parsed YAML) as ``model``; a ValidationError becomes ``error`` naming file and field."""
    try:
        return model.model_validate(raw, context=context)
    except ValidationError as e:
        raise translate(e, model, file, where, error) from None
