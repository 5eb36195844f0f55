"""Evalset readers and validation: every malformed input names file, row and field."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from route_switch.core.errors import EvalsetError
from route_switch.core.evalset import load_evalset, save_evalset

from conftest import synthetic_records


def _long_df(n=12):
    return pd.DataFrame(synthetic_records(n))


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_long_formats_round_trip(tmp_path, synthetic, suffix):
    path = tmp_path / f"ev{suffix}"
    save_evalset(synthetic, path)
    back = load_evalset(path)
    assert back.models == synthetic.models
    assert back.prompts == synthetic.prompts
    assert (back.scores == synthetic.scores).all()
    assert abs(back.costs - synthetic.costs).max() < 1e-12


def test_routerbench_wide_format(tmp_path):
    df = _long_df(9)
    wide = df.pivot(index="prompt", columns="model", values="score")
    for m in ["small", "medium", "large"]:
        wide[m + "|total_cost"] = df[df.model == m].set_index("prompt")["cost_usd"]
        wide[m + "|model_response"] = "answer"
    wide = wide.reset_index()
    wide["sample_id"] = [f"s{i}" for i in range(len(wide))]
    wide["eval_name"] = "toy"
    path = tmp_path / "wide.csv"
    wide.to_csv(path, index=False)
    ev = load_evalset(path)
    assert sorted(ev.models) == ["large", "medium", "small"]
    assert len(ev) == 9
    assert set(ev.queries["task"]) == {"toy"}


def _write(tmp_path, df, name="bad.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("mutate, field, row", [
    (lambda d: d.drop(columns=["score"]), "score", None),
    (lambda d: d.drop(columns=["cost_usd"]), "cost_usd", None),
    (lambda d: d.assign(score=d.score.where(d.index != 4, float("nan"))), "score", 5),
    (lambda d: d.assign(cost_usd=d.cost_usd.where(d.index != 7, -1.0)), "cost_usd", 8),
    (lambda d: d.assign(score=d.score.astype(object).where(d.index != 2, "high")), "score", 3),
    (lambda d: d.assign(score=d.score.where(d.index != 3, 1.5)), "score", 4),
])
def test_malformed_rows_name_file_row_field(tmp_path, mutate, field, row):
    path = _write(tmp_path, mutate(_long_df()))
    with pytest.raises(EvalsetError) as e:
        load_evalset(path)
    assert e.value.field == field and e.value.row == row
    assert str(path) in str(e.value) and field in str(e.value)


def test_unknown_model_empty_file_and_bad_jsonl(tmp_path):
    path = _write(tmp_path, _long_df())
    with pytest.raises(EvalsetError, match="unknown model") as e:
        load_evalset(path, models=["small", "gpt-9"])
    assert e.value.field == "model"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(EvalsetError, match="empty"):
        load_evalset(empty)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "model": "m", "score": 1, "cost_usd": 0}) + "\n{not json\n")
    with pytest.raises(EvalsetError) as e:
        load_evalset(bad)
    assert e.value.line == 2
    with pytest.raises(EvalsetError, match="pickle"):
        p = tmp_path / "x.pkl"
        p.write_bytes(b"\x80\x04")
        load_evalset(p)


def test_duplicate_prompts_are_collapsed(tmp_path):
    df = _long_df(6)
    dup = df[df.id == "q1"].copy()
    dup["id"] = "q1-again"
    dup["prompt"] = "  " + dup["prompt"].str.upper() + " "  # same text after normalisation
    ev = load_evalset(_write(tmp_path, pd.concat([df, dup])))
    assert len(ev) == 6 and ev.n_duplicates_dropped == 1
    assert "q1-again" not in set(ev.queries["id"])


def test_models_default_to_full_coverage(tmp_path):
    df = _long_df(6)
    extra = pd.DataFrame([{"id": "q0", "prompt": df.prompt[0], "model": "partial", "score": 1.0, "cost_usd": 0.1}])
    ev = load_evalset(_write(tmp_path, pd.concat([df, extra])))
    assert "partial" not in ev.models and len(ev) == 6
    ev2 = load_evalset(_write(tmp_path, pd.concat([df, extra]), "b.csv"), models=["small", "partial"])
    assert len(ev2) == 1


def test_split_is_reproducible_and_disjoint(synthetic):
    a_tr, a_te = synthetic.split(0.3, seed=1)
    b_tr, b_te = synthetic.split(0.3, seed=1)
    assert a_te.prompts == b_te.prompts
    assert not set(a_tr.prompts) & set(a_te.prompts)
    assert len(a_tr) + len(a_te) == len(synthetic)


@pytest.mark.parametrize("variant", [lambda p: p.replace(" ", " \u200b", 1), lambda p: "\ufeff" + p,
                                     lambda p: p.replace(" ", "\u00a0"), lambda p: p.replace("e", "e\u200d"),
                                     lambda p: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in p),
                                     lambda p: p.replace(" ", "\u2060 \u00ad")])
def test_duplicate_prompts_with_invisible_or_wide_characters_are_collapsed(tmp_path, variant):
    from route_switch.core.evalset import normalise_prompt

    df = _long_df(6)
    dup = df[df.id == "q1"].copy()
    dup["id"] = "q1-again"
    dup["prompt"] = dup["prompt"].map(variant)
    assert (dup["prompt"] != df[df.id == "q1"]["prompt"].to_numpy()).all()
    ev = load_evalset(_write(tmp_path, pd.concat([df, dup])))
    assert len(ev) == 6 and ev.n_duplicates_dropped == 1 and "q1-again" not in set(ev.queries["id"])
    assert normalise_prompt("Café au lait") != normalise_prompt("Cafe au lait")  # accents still count
