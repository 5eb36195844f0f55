"""The schema of router.yaml (see :mod:`route_switch.routing.config` for an example file)."""
from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, ValidationInfo, field_validator, model_validator

from route_switch.core.fields import HELP
from route_switch.core.schema import Model, Text

NonNegative = Field(default=None, ge=0)


class TierSpec(Model):
    """One tier, cheapest first: tier 1 = ``tiers[0]``."""

    name: Text | None = Field(None, description="shown in decisions and logs (default: tier<N>)")
    model: Text = Field(description="the model's name (an evalset column) and, by default, the upstream model")
    price_in: float | None = Field(None, ge=0, description="USD per 1M input tokens")
    price_out: float | None = Field(None, ge=0, description="USD per 1M output tokens")
    api_base: str | None = Field(None, description="OpenAI-compatible endpoint (proxy and labelling)")
    api_key_env: str | None = Field(None, description="environment variable holding the endpoint's API key")
    upstream_model: Text | None = Field(None, description="model name sent upstream, when it differs from model")
    api_key: Any = Field(None, exclude=True)

    @field_validator("price_in", "price_out", mode="before")
    @classmethod
    def _price(cls, v):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v == v
                              or v in (float("inf"), float("-inf")) or v < 0):
            raise ValueError(f"must be a finite non-negative number, got {v!r}")
        return v

    @field_validator("api_key", mode="before")
    @classmethod
    def _no_key(cls, v):
        raise ValueError("API keys never go in files: name an environment variable with api_key_env")


def _knob(name: str, v):
    from route_switch.core.knobs import check_knob

    return check_knob(name, v)


class Selection(Model):
    """How a tier is chosen from the predicted qualities; ``fit`` writes it."""

    rule: Literal["tau", "anchored"] = Field("tau", description="tau, or anchored: stay on the best model "
                                                                "unless a cheaper one is within tau")
    tau: float | None = Field(None, description=HELP["selection.tau"] + "; the anchored rule also takes -1 (always the anchor)")
    lam: float | None = Field(None, alias="lambda", description=HELP["selection.lambda"])
    max_quality_loss: float | None = Field(None, description="written by fit --max-quality-loss: the certified loss")
    confidence: float | None = Field(None, description="written by fit --max-quality-loss: its confidence")
    anchor: Text | None = Field(None, description="written by fit --max-quality-loss: the anchor model")
    n_calibration: int | None = Field(None, description="written by fit --max-quality-loss: calibration queries")
    certified: bool | None = Field(None, description="written by fit --max-quality-loss: whether a tau passed")
    method: Text | None = Field(None, description="written by fit --max-quality-loss: the test used")

    @field_validator("tau", mode="before")
    @classmethod
    def _tau(cls, v, info: ValidationInfo):
        try:
            return _knob("anchored_tau" if info.data.get("rule") == "anchored" else "tau", v)
        except ValueError as e:
            raise ValueError(str(e).replace("anchored_tau", "tau")) from None

    @field_validator("lam", mode="before")
    @classmethod
    def _lam(cls, v):
        return _knob("lambda", v)


class Bypass(Model):
    """Short queries skip the router."""

    max_tokens: int = Field(0, ge=0, description=HELP["bypass.max_tokens"])


class RouterLLMSection(Model):
    """The optional router LLM (a small model following a routing program)."""

    program: str = Field(description="program YAML or optimised artifact folder (relative to this file; "
                                      "programs/default.yaml: the shipped one)")
    lm: dict | None = Field(None, description="LM config, e.g. {kind: local} or {kind: openai, model, api_base, "
                                              "api_key_env}")
    timeout_s: float | None = Field(None, ge=0, description=HELP["llm.timeout_s"] + " (default 2)")
    max_query_tokens: int | None = Field(None, ge=0, description=HELP["llm.max_query_tokens"])
    fusion: str | None = Field(None, description="fusion.json written by fit --program (relative to this file)")
    tau: float | None = Field(None, ge=0, le=1, description="knob for decisions the LLM takes part in "
                                                            "(default: selection's)")
    lam: float | None = Field(None, alias="lambda", ge=0, description="as tau, for the lambda rule")
    fusion_n: int | None = Field(None, ge=0, description=HELP["llm.fusion_n"] + "; read by fit, not by route()")
    fit_n: int | None = Field(None, ge=0, exclude=True)  # the old name of fusion_n, written by earlier fits


class RouteLogSection(Model):
    """Opt-in decision log for the weekly re-optimisation job."""

    path: str = Field(description="JSONL file (relative to this file)")
    privacy: Literal["hash", "full"] = Field("hash", description="hash (sha256 of the query) or full (the text)")
    max_bytes: int = Field(10_000_000, ge=1024, description="rotate beyond this size")
    backups: int = Field(5, ge=0, description="old files kept")


class ConversationSection(Model):
    """Chat messages: route on the last user turn plus earlier context."""

    context_tokens: int = Field(256, ge=0, description="budget for earlier turns, most recent first "
                                                       "(0: the last turn only)")
    roles: list[Literal["user", "assistant", "system", "tool"]] = Field(
        ["user"], description="which earlier turns count")
    sticky: bool = Field(True, description="with a session key, follow-ups keep the session's last tier")
    sticky_drop: int = Field(0, ge=0, description="... or at most this many tiers below it")
    session_ttl_s: float = Field(3600.0, gt=0, description="seconds a session's tier is remembered")
    max_sessions: int = Field(100_000, ge=0, description="sessions remembered (least recent dropped)")


class StateSection(Model):
    """Share rate limits (and optionally decisions) across proxy processes through Redis."""

    redis_url: str | None = Field(None, description="redis://, rediss:// or unix:// URL without a password")
    redis_url_env: str | None = Field(None, min_length=1, description="environment variable holding the URL")
    share_cache: bool = Field(False, description="also share routing decisions")
    prefix: str = Field("route-switch", min_length=1, description="key prefix (one per deployment)")

    @field_validator("redis_url")
    @classmethod
    def _url(cls, url):
        if url is not None:
            if urlparse(url).scheme not in ("redis", "rediss", "unix"):
                raise ValueError(f"must be a redis://, rediss:// or unix:// URL, got {url!r}")
            if urlparse(url).password:
                raise ValueError("holds a password: put the URL in an environment variable and name it with "
                                 "redis_url_env")
        return url

    @model_validator(mode="after")
    def _one(self):
        if (self.redis_url is None) == (self.redis_url_env is None):
            raise ValueError("give exactly one of redis_url, redis_url_env")
        return self


class TierList(Model):
    """A list of tiers on its own (an evalset spec's or the weekly job's ``tiers:``)."""

    tiers: list[TierSpec] = Field(min_length=1, description="cheapest first; tier 1 = tiers[0]")


class RouterFile(Model):
    """router.yaml: tiers, the estimator, the selection knob, bypass and the router LLM."""

    tiers: list[TierSpec] | None = Field(None, min_length=1, description="cheapest first; tier 1 = tiers[0]")
    estimator: str | None = Field(None, min_length=1, description="folder written by route-switch fit "
                                                                   "(relative to this file)")
    selection: Selection | None = Field(None, description="the selection rule and its knob (default: tau 0.1)")
    bypass: Bypass | None = Field(None, description="short queries go to tier 1 without the router")
    llm: RouterLLMSection | None = Field(None, description="the optional router LLM")
    cache_size: int = Field(10_000, ge=0, description="decisions cached (0: off)")
    default_tier: int | None = Field(None, ge=1, description="used only when nothing else can decide "
                                                             "(at most the number of tiers)")
    route_log: RouteLogSection | None = Field(None, description="opt-in decision log")
    conversation: ConversationSection | None = Field(None, description="multi-turn routing")
    state: StateSection | None = Field(None, description="shared state across proxy processes")

    @field_validator("estimator")
    @classmethod
    def _estimator(cls, v):
        if v is not None and not v.strip():
            raise ValueError(f"must be the path of an estimator folder, got {v!r}")
        return v

    @field_validator("default_tier")
    @classmethod
    def _default_tier(cls, v, info: ValidationInfo):
        n = len(info.data.get("tiers") or []) or 1
        if v is not None and v > n:
            raise ValueError(f"must be within [1, {n}], got {v!r}")
        return v
