"""Nothing the repository ships (programs, demos, artifacts, benchmark corpora) is a prompt from the shared data,
except an artifact's demos drawn from its evalset's *train* split whose ids its metrics.json records."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted([*ROOT.glob("route_switch/data/programs/*.yaml"), *ROOT.glob("programs/*.yaml"), *ROOT.glob("optimized/*/demos.yaml"),
                  *ROOT.glob("benchmarks/**/*.yaml")])


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.lower()).strip()


def _queries(doc) -> list[str]:
    """Every string under a 'query' key, or in a list of strings, anywhere in a YAML document."""
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in ("query", "queries") and isinstance(v, str):
                out.append(v)
            else:
                out += _queries(v)
    elif isinstance(doc, list):
        for v in doc:
            out += [v] if isinstance(v, str) and len(v) > 30 else _queries(v)
    return out


@pytest.mark.shared_data
def test_shipped_texts_are_not_shared_data_prompts(shared_data):
    import pandas as pd

    corpus = "\n".join(_norm(p) for f in shared_data.glob("*.parquet")
                       for p in pd.read_parquet(f, columns=["prompt"])["prompt"].unique())
    hits = []
    for f in SHIPPED:
        allowed = _recorded_train_demos(f)
        for q in _queries(yaml.safe_load(f.read_text(encoding="utf-8"))):
            n = _norm(q)
            if len(n) >= 25 and (n in corpus or n[:60] in corpus) and q not in allowed:
                hits.append(f"{f.relative_to(ROOT)}: {q[:70]}")
    assert not hits, "shipped texts found in ../shared/data:\n" + "\n".join(hits)


def _recorded_train_demos(f: Path) -> set[str]:
    """An artifact's demo queries whose evalset ids metrics.json records, checked to lie in the train split."""
    import json

    from route_switch.llm.artifacts import load_artifact
    from route_switch.core.spec import load_spec

    m = f.parent / "metrics.json"
    if f.name != "demos.yaml" or not m.exists():
        return set()
    meta = json.loads(m.read_text())
    ids = set((meta.get("demos") or {}).get("ids") or [])
    if not ids:
        return set()
    train, test = load_spec(meta["evalset"]["name"]).train_test()
    assert not ids & set(test.queries["id"].astype(str)), f"{f}: a demo is a test-split query"
    assert ids <= set(train.queries["id"].astype(str)), f"{f}: a demo id is not in the train split"
    recorded = [_norm(p) for p in train.queries.set_index(train.queries["id"].astype(str)).loc[sorted(ids), "prompt"]]
    demos = load_artifact(f.parent).demos
    # a demo is the router's view of a recorded query (its head, or head and tail): match on its start
    return {d["query"] for d in demos if any(_norm(d["query"])[:60] in r for r in recorded)}
