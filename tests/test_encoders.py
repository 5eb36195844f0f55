"""Encoders: the head+tail view of long queries, and the opt-in MiniLM (int8 ONNX) encoder."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from route_switch.cli import main
from route_switch.routing.controller import Router
from route_switch.core.encoders import make_encoder, minilm_available, minilm_files
from route_switch.core.errors import ConfigError
from route_switch.core.estimator import QualityEstimator


def test_long_queries_are_read_as_head_and_tail(synthetic):
    enc = make_encoder("tfidf", max_chars=200).fit(synthetic.prompts)
    head, tail = "Prove this theorem step by step. ", " Write a Python function."
    long = head + "filler " * 5000 + tail
    view = enc.view(long)
    assert len(view) <= 210 and view.startswith(head[:50]) and view.endswith(tail)
    assert enc.view("short") == "short"
    # batch counting equals one-at-a-time counting
    X = enc.transform(synthetic.prompts[:20])
    for i in (0, 7, 19):
        np.testing.assert_allclose(X[i].toarray(), enc.transform([synthetic.prompts[i]]).toarray(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(X.multiply(X).sum(axis=1)).ravel(), 1, atol=1e-5)  # L2-normalised


def test_route_of_a_huge_query_is_bounded_and_never_raises(synthetic):
    est = QualityEstimator().fit(synthetic.prompts, synthetic.scores, synthetic.models, synthetic.costs)
    router = Router(estimator=est, cache_size=0)
    d = router.route("Derive the integral step by step. " + "x" * 1_000_000 + " use tier 1 please.")
    assert d.path == "estimator" and 1 <= d.tier <= 3
    assert len(router.route_batch(["", "a" * 300_000, "hello"])) == 3


def test_missing_minilm_files_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match="pip install"):
        minilm_files()


@pytest.mark.skipif(not minilm_available(), reason="minilm extra not installed (pip install '.[minilm]' ...)")
def test_minilm_estimator_fits_saves_loads_and_routes(synthetic, tmp_path):
    ev = synthetic.subset(np.arange(120))
    est = QualityEstimator(encoder="minilm-onnx").fit(ev.prompts, ev.scores, ev.models, ev.costs)
    pred = est.predict(ev.prompts)
    hard = (ev.queries["task"] == "hard").to_numpy()
    assert pred[hard, 0].mean() < pred[~hard, 0].mean() - 0.3  # the small model is predicted to fail hard ones
    est.save(tmp_path / "e")
    assert (tmp_path / "e" / "arrays.npz").stat().st_size < 2_000_000   # the model is not copied into it
    back = QualityEstimator.load(tmp_path / "e")
    assert back.encoder == "minilm-onnx"
    np.testing.assert_allclose(back.predict(ev.prompts[:10]), pred[:10], atol=1e-5)
    data = tmp_path / "syn.jsonl"
    data.write_text("".join(json.dumps({"id": str(ev.queries["id"].iloc[i]), "prompt": ev.prompts[i], "model": m,
                                        "score": float(ev.scores[i, j]), "cost_usd": float(ev.costs[i, j])}) + "\n"
                            for i in range(len(ev)) for j, m in enumerate(ev.models)))
    assert main(["fit", "--data", str(data), "--encoder", "minilm-onnx", "--out", str(tmp_path / "r")]) == 0
    d = Router.from_config(tmp_path / "r").route("Say hello to Oslo 3.")
    assert d.path == "estimator"
    assert json.loads((tmp_path / "r" / "estimator.json").read_text())["encoder"]["name"] == "minilm-onnx"


def test_unknown_encoder_is_a_one_line_cli_error(synthetic, tmp_path, capsys):
    data = tmp_path / "syn.csv"
    data.write_text("prompt,model,score,cost_usd\n" + "".join(f"q{i},m{j},1,0.{j + 1}\n" for i in range(30) for j in range(2)))
    assert main(["fit", "--data", str(data), "--encoder", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "unknown encoder" in capsys.readouterr().err


def test_batched_and_single_predictions_agree(synthetic):
    # the batch path splits the neighbour similarity differently from the one-query path
    est = QualityEstimator().fit(synthetic.prompts, synthetic.scores, synthetic.models, synthetic.costs)
    long = [p + " " + " ".join(synthetic.prompts[:40]) for p in synthetic.prompts[:30]]
    qs = synthetic.prompts[:30] + long
    batch = est.predict(qs)
    single = np.vstack([est.predict([q]) for q in qs])
    np.testing.assert_allclose(batch, single, atol=1e-4)


@pytest.mark.parametrize("text", ["Plain ASCII text, with_under_scores and 42 numbers x1 y2.", "İstanbul ΣΑΣ naïve façade Kelvin",
                                  "mixed: café au lait; 東京 2024 — ok", "\u212a ascii after lower", ""])
def test_tokens_match_the_vectorizers_pattern(text):
    from route_switch.core.encoders import TOKEN, tokens

    assert tokens(text) == TOKEN.findall(text.lower())  # the ASCII fast path finds the same tokens

