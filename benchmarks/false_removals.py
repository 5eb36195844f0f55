"""How many real prompts lose text to the sanitiser (false removals), JSON output.

    python benchmarks/false_removals.py [--model FILE]

Samples prompts of the shared sets (seed 0: 3,000 dcrouter, 2,000 routellm, 2,000 zeroeval, all 805
alpacaeval2), counts those for which ``directive_spans`` is not empty and shows what was removed.
``--model``: a directive-model JSON file to use instead of the shipped one (to compare two fits).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETS = (("dcrouter", 3000), ("routellm", 2000), ("zeroeval", 2000), ("alpacaeval2", 805))


def main(argv=None) -> None:
    import pandas as pd

    from route_switch.core import directive_model
    from route_switch.core.paths import data_dir
    from route_switch.core.sanitize import directive_spans

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="directive model JSON (default: the shipped one)")
    a = ap.parse_args(argv)
    if a.model:
        m = directive_model.DirectiveModel.from_dict(json.loads(a.model.read_text(encoding="utf-8")), str(a.model))
        directive_model.shipped_model = lambda: m  # the sanitiser looks the model up at call time
    out = {}
    for name, n in SETS:
        p = pd.read_parquet(data_dir() / f"{name}.parquet", columns=["prompt"])["prompt"].drop_duplicates()
        p = p.sample(min(n, len(p)), random_state=0)
        spans = [(q, directive_spans(q)) for q in p]
        out[name] = {"prompts": len(p), "text_changed": sum(bool(s) for _, s in spans),
                     "removed": [q[a:b] for q, s in spans for a, b in s][:20]}
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
