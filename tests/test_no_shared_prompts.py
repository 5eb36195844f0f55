"""Nothing the repository ships (programs, demos, artifacts, benchmark corpora) is a prompt from the shared data."""
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
        for q in _queries(yaml.safe_load(f.read_text(encoding="utf-8"))):
            n = _norm(q)
            if len(n) >= 25 and (n in corpus or n[:60] in corpus):
                hits.append(f"{f.relative_to(ROOT)}: {q[:70]}")
    assert not hits, "shipped texts found in ../shared/data:\n" + "\n".join(hits)
