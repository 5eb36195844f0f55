"""api_key_env: one behaviour wherever a key is used: a clear error naming the tier and the variable."""
from __future__ import annotations

import pytest

from route_switch.labeling.calls import ChatCaller, TierCallError
from route_switch.llm.lm import LMConfigError, make_lm
from route_switch.server.upstream import UpstreamFailure, _request
from route_switch.core.tiers import Tier, api_key_from_env


def test_helper(monkeypatch):
    monkeypatch.delenv("RS_MISSING_KEY", raising=False)
    assert api_key_from_env(None, "tier 'a'") is None
    with pytest.raises(ValueError, match="tier 'a': environment variable RS_MISSING_KEY"):
        api_key_from_env("RS_MISSING_KEY", "tier 'a'")
    monkeypatch.setenv("RS_MISSING_KEY", "")
    with pytest.raises(ValueError, match="RS_MISSING_KEY"):
        api_key_from_env("RS_MISSING_KEY", "tier 'a'")
    monkeypatch.setenv("RS_MISSING_KEY", "sk-1")
    assert api_key_from_env("RS_MISSING_KEY", "tier 'a'") == "sk-1"


def test_every_user_raises_naming_tier_and_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("RS_MISSING_KEY", raising=False)
    tier = Tier(name="large", model="m", api_base="http://127.0.0.1:9/v1", api_key_env="RS_MISSING_KEY")
    with pytest.raises(UpstreamFailure, match="tier 'large': environment variable RS_MISSING_KEY"):
        _request(tier, {"messages": []}, stream=False)
    caller = ChatCaller(tmp_path / "c", timeout_s=0.5, retries=0)
    try:
        with pytest.raises(TierCallError, match="tier 'large': environment variable RS_MISSING_KEY"):
            caller.call_tier(tier, [{"role": "user", "content": "hi"}])
    finally:
        caller.close()
    with pytest.raises(LMConfigError, match="lm config: environment variable RS_MISSING_KEY"):
        make_lm({"kind": "openai", "model": "m", "api_key_env": "RS_MISSING_KEY"})
    monkeypatch.setenv("RS_MISSING_KEY", "sk-2")
    _, headers, _ = _request(tier, {"messages": []}, stream=False)
    assert headers["authorization"] == "Bearer sk-2"
