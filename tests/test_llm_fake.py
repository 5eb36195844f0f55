"""Fast tests of the router-LLM layer with the FAKE engine (no model needed)."""
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from route_switch.core.paths import packaged_dir
from route_switch.llm import model_files
from route_switch.llm.lm import LMConfigError, make_lm
from route_switch.core.tokens import count_tokens, estimate_tokens
from route_switch.llm.program import ProgramError, RoutingProgram
from route_switch.llm.router_llm import RouterLLM, RouterLLMError, build_module, program_from_module

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = packaged_dir("programs") / "default.yaml"


@pytest.fixture
def program():
    return RoutingProgram.from_yaml(DEFAULT)


def test_default_program_loads(program):
    assert program.labels == ["1", "2", "3"]
    assert [t["name"] for t in program.tiers] == ["small", "medium", "large"]
    assert all(d["tier"] in (1, 2, 3) for d in program.demos)


def test_yaml_round_trip(program, tmp_path):
    out = tmp_path / "p.yaml"
    program.to_yaml(out)
    assert RoutingProgram.from_yaml(out) == program


@pytest.mark.parametrize("text, field", [
    ("name: x\ntiers: [{name: a, description: d}, {name: b}]\ninstruction: i\n", "tiers[1].description"),
    ("name: x\ntiers: [{name: a, description: d}]\ninstruction: i\n", "tiers"),
    ("tiers: [{name: a, description: d}, {name: b, description: e}]\ninstruction: i\n", "name"),
    ("name: x\ntiers: [{name: a, description: d}, {name: b, description: e}]\n", "instruction"),
    ("name: x\ntiers: [{name: a, description: d}, {name: b, description: e}]\ninstruction: i\n"
     "demos: [{query: q, tier: 5}]\n", "demos[0].tier"),
    ("name: x\ntiers: [{name: a, description: d}, {name: b, description: e}]\ninstruction: i\n"
     "demos: [{tier: 1}]\n", "demos[0].query"),
    ("name: [unclosed\n", "line 2"),  # a YAML syntax error is located by line
    ("- just\n- a list\n", "<root>"),
])
def test_malformed_yaml_names_file_and_field(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ProgramError) as exc:
        RoutingProgram.from_yaml(path)
    assert str(path) in str(exc.value) and field in str(exc.value)


def test_demo_tier_by_name(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ntiers: [{name: a, description: d}, {name: b, description: e}]\n"
                    "instruction: i\ndemos: [{query: q, tier: b}]\n")
    assert RoutingProgram.from_yaml(path).demos == [{"query": "q", "tier": 2}]


def test_module_returns_only_allowed_tiers(program):
    import dspy

    module = build_module(program, make_lm({"kind": "fake"}, labels=program.labels))
    assert isinstance(module.predict, dspy.Predict)
    assert [name for name, _ in module.named_predictors()] == ["predict"]
    cases = {"What is the capital of Peru?": "1", "Explain how a hash map works": "2",
             "Prove that there are infinitely many primes": "3"}
    for query, want in cases.items():
        assert module(query=query).tier == want


def test_module_uses_settings_lm_when_none_given(program):
    import dspy

    module = build_module(program)
    with dspy.context(lm=make_lm({"kind": "fake", "mode": "fixed", "fixed_label": "2"})):
        assert module(query="anything").tier == "2"


def test_module_save_json_and_back(program, tmp_path):
    module = build_module(program, make_lm({"kind": "fake"}))
    module.predict.signature = module.predict.signature.with_instructions("NEW INSTRUCTION")
    path = tmp_path / "m.json"
    module.save(str(path))
    state = json.loads(path.read_text())
    assert state["predict"]["signature"]["instructions"] == "NEW INSTRUCTION"
    assert len(state["predict"]["demos"]) == len(program.demos)
    fresh = build_module(program)
    fresh.load(str(path))
    back = program_from_module(fresh, program)
    assert back.instruction == "NEW INSTRUCTION" and back.demos == program.demos


def test_module_deepcopy_keeps_engine(program):
    lm = make_lm({"kind": "fake"})
    module = build_module(program, lm)
    copy = module.deepcopy()
    assert copy._lm_ref.obj is lm and copy.predict is not module.predict


def test_router_llm_predict(program):
    router = RouterLLM(program, {"kind": "fake"})
    assert router.predict("What is 2 + 2?", timeout_s=5) == (0, "1")
    assert router.predict("Implement quicksort in C", timeout_s=5) == (2, "3")
    assert router.predict("Summarize this paragraph") == (1, "2")
    long_q = "word " * 5000 + "prove it"
    assert router.predict(long_q, timeout_s=5)[1] in program.labels
    assert len(router.lm.engine.calls[-1]) < 1300  # clipped


@pytest.mark.parametrize("mode", ["fail", "garbage", "out_of_range"])
def test_router_llm_failures_raise(program, mode):
    router = RouterLLM(program, {"kind": "fake", "mode": mode})
    with pytest.raises(RouterLLMError):
        router.predict("What is 2 + 2?", timeout_s=5)
    with pytest.raises(RouterLLMError):
        router.predict("What is 2 + 2?")


def test_router_llm_timeout(program):
    router = RouterLLM(program, {"kind": "fake", "mode": "timeout", "delay_s": 2.0})
    t0 = time.monotonic()
    with pytest.raises(RouterLLMError, match="timed out"):
        router.predict("What is 2 + 2?", timeout_s=0.2)
    assert time.monotonic() - t0 < 1.0


def test_router_llm_rejects_empty_query(program):
    with pytest.raises(RouterLLMError):
        RouterLLM(program, {"kind": "fake"}).predict("  ")


def test_make_lm_config_errors(monkeypatch):
    with pytest.raises(LMConfigError):
        make_lm({"kind": "nope"})
    with pytest.raises(LMConfigError):
        make_lm({"kind": "openai"})
    monkeypatch.delenv("RS_TEST_KEY", raising=False)
    with pytest.raises(LMConfigError, match="RS_TEST_KEY"):
        make_lm({"kind": "openai", "model": "m", "api_key_env": "RS_TEST_KEY"})
    monkeypatch.setenv("RS_TEST_KEY", "sk-x")
    lm = make_lm({"kind": "openai", "model": "m", "api_key_env": "RS_TEST_KEY", "api_base": "http://127.0.0.1:9"})
    assert lm.model == "endpoint/m" and lm.engine.api_base == "http://127.0.0.1:9"


@pytest.mark.parametrize("text", ["", "hello world", "é" * 10, "\x00\udcff", None, 123, b"bytes", "a" * 100000])
def test_count_tokens_never_raises(text):
    assert count_tokens(text) >= 0


def test_count_tokens_with_tokenizers():
    class Broken:
        def encode(self, s):
            raise RuntimeError("boom")

    assert count_tokens("abcdefgh", Broken()) == estimate_tokens("abcdefgh") == 2
    assert count_tokens("a b c", lambda s: s.split()) == 3


def _fake_parts(tmp_path, monkeypatch, data=(b"GGUF-part-one", b"part-two")):
    parts = []
    for i, blob in enumerate(data, 1):
        p = tmp_path / f"part0{i}.bin"
        p.write_bytes(blob)
        parts.append(p)
    joined = b"".join(data)
    spec = model_files.MODELS[model_files.DEFAULT_MODEL]
    fake = model_files.ModelSpec(spec.title, spec.filename, hashlib.sha256(joined).hexdigest(), len(joined),
                                 spec.dists, spec.version)
    monkeypatch.setitem(model_files.MODELS, model_files.DEFAULT_MODEL, fake)
    monkeypatch.setattr(model_files, "find_parts", lambda spec=None: parts)
    return parts, joined


def test_ensure_local_model_joins_verifies_and_caches(tmp_path, monkeypatch, caplog):
    parts, joined = _fake_parts(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    with caplog.at_level("WARNING", logger="route_switch"):
        path = model_files.ensure_local_model(cache)
    assert path.read_bytes() == joined and path.parent == cache
    assert [r.getMessage() for r in caplog.records if "assembling the Qwen2.5-Coder" in r.getMessage()]  # not silent
    caplog.clear()
    calls = []
    monkeypatch.setattr(model_files, "sha256_file", lambda p: calls.append(p) or "x")
    assert model_files.ensure_local_model(cache) == path and calls == []  # marker: no re-hash
    assert not caplog.records  # and no message once it is assembled
    assert not list(cache.glob("*.tmp"))


def test_ensure_local_model_rebuilds_corrupt_cache(tmp_path, monkeypatch):
    parts, joined = _fake_parts(tmp_path, monkeypatch)
    path = model_files.ensure_local_model(tmp_path / "c")
    path.write_bytes(b"X" * len(joined))  # same size, new mtime -> re-verified
    assert model_files.ensure_local_model(tmp_path / "c").read_bytes() == joined


def test_ensure_local_model_bad_parts(tmp_path, monkeypatch):
    parts, _ = _fake_parts(tmp_path, monkeypatch)
    parts[1].write_bytes(b"corrupted")
    with pytest.raises(model_files.ModelFileError, match="part02.bin"):
        model_files.ensure_local_model(tmp_path / "c")
    assert not list((tmp_path / "c").glob("*"))


def test_missing_parts_say_what_to_install():
    spec = model_files.ModelSpec("x", "x.gguf", "0" * 64, 1, ("route-switch-no-such-dist-part1",), "0.9.0")
    with pytest.raises(model_files.ModelFileError, match="pip install route-switch-no-such-dist-part1==0.9.0"):
        model_files.find_parts(spec)
    with pytest.raises(model_files.ModelFileError, match="qwen2.5-coder-1.5b"):
        model_files.model_spec("gpt-17")
    big = model_files.model_spec("qwen2.5-coder-1.5b")  # the opt-in proposer: 22 parts, pinned size and hash
    assert len(big.dists) == 22 and big.size == 1_117_320_768 and big.sha256.startswith("cc324af0")


def test_joined_file_must_be_a_gguf(tmp_path, monkeypatch):
    _fake_parts(tmp_path, monkeypatch, data=(b"not-a-model", b"part-two"))
    with pytest.raises(model_files.ModelFileError, match="not a GGUF"):
        model_files.ensure_local_model(tmp_path / "c")


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ROUTE_SWITCH_CACHE", str(tmp_path))
    assert model_files.default_cache_dir() == tmp_path / "models"


def test_imports_are_light():
    code = ("import sys, route_switch.llm, route_switch.llm.lm, route_switch.llm.engines, route_switch.llm.fakes, "
            "route_switch.core.tokens, route_switch.llm.model_files, route_switch.llm.program\n"
            "heavy = [m for m in ('dspy', 'llama_cpp', 'litellm') if m in sys.modules]\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
