"""The house rules of the source tree: benchmarks stand on the package, not on the tests."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_MODULES = {p.stem for p in (ROOT / "tests").glob("*.py")}


def test_benchmarks_do_not_import_tests():
    pat = re.compile(r"^\s*(?:from|import)\s+([\w.]+)", re.M)
    for f in sorted((ROOT / "benchmarks").rglob("*.py")):
        text = f.read_text()
        imported = {m.split(".")[0] for m in pat.findall(text)}
        assert not imported & (TEST_MODULES | {"tests"}), (f.name, imported & (TEST_MODULES | {"tests"}))
        assert '"tests"' not in text and "'tests'" not in text, f.name  # no sys.path into tests/


def test_one_kind_of_router_per_name():
    assert (ROOT / "route_switch" / "core" / "baselines.py").is_file()
    assert not (ROOT / "route_switch" / "routers.py").exists()
