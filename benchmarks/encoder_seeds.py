"""TF-IDF vs MiniLM (int8 ONNX) inside the estimator, with error bars over random splits (JSON output).

    python benchmarks/encoder_seeds.py [--specs dcrouter-9,zeroeval-26] [--seeds 0,1,2,3,4] [--out runs/encoder_seeds.json]

Needs the minilm extra (docs/estimator.md, "Choosing an encoder"). MiniLM embeddings do not depend on the
split, so every prompt is embedded once (cached under the route-switch cache directory) and the
per-split fits read the cache through a benchmark-only encoder; the deployed ``minilm-onnx``
encoder computes the same vectors. Latency is measured separately with the real encoders:
median single-query ``predict`` over 200 test prompts.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from route_switch.core.encoders import MiniLMEncoder, register
from route_switch.core.estimator import QualityEstimator
from route_switch.core.evaluate import evaluate
from route_switch.core.paths import cache_dir
from route_switch.core.seeds import describe
from route_switch.core.spec import load_spec

_TABLE: dict[str, np.ndarray] = {}


def _key(p: str) -> str:
    return hashlib.blake2b(p.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


@register("minilm-onnx-cached")
class CachedMiniLM(MiniLMEncoder):
    """Benchmark only: the MiniLM vectors looked up from a table filled once per evalset."""

    def fit(self, prompts):
        return self

    def transform(self, prompts):
        import scipy.sparse as sp

        return sp.csr_matrix(np.vstack([_TABLE[_key(p)] for p in prompts]) if prompts else np.zeros((0, 384), np.float32))


def fill_table(name: str, prompts: list[str]) -> None:
    f = cache_dir() / "bench" / f"minilm-{name}.npz"
    keys = [_key(p) for p in prompts]
    if f.exists():
        with np.load(f, allow_pickle=False) as z:
            if list(z["keys"]) == keys:
                _TABLE.update(zip(keys, z["vectors"]))
                return
    t = time.time()
    vecs = MiniLMEncoder().embed(prompts)
    print(f"embedded {len(prompts)} prompts of {name} in {time.time() - t:.0f}s", flush=True)
    f.parent.mkdir(parents=True, exist_ok=True)
    np.savez(f, keys=np.array(keys), vectors=vecs)
    _TABLE.update(zip(keys, vecs))


def latency_ms(params: dict, train, test) -> float:
    est = QualityEstimator(**params).fit(train.prompts, train.scores, train.models, train.costs)
    lat = []
    for q in test.prompts[:200]:
        t = time.perf_counter()
        est.predict([q])
        lat.append((time.perf_counter() - t) * 1000)
    return statistics.median(lat)


CANDIDATES = {"tfidf": {}, "minilm-onnx": {"encoder": "minilm-onnx-cached"}}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--specs", default="dcrouter-9,zeroeval-26")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--out", default="runs/encoder_seeds.json")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = {"seeds": seeds, "load_average_start": list(os.getloadavg()), "specs": {}}
    for name in args.specs.split(","):
        spec = load_spec(name)
        ev = spec.load()
        fill_table(name, ev.prompts)
        res: dict = {}
        for label, params in CANDIDATES.items():
            rows = []
            for s in seeds:
                train, test = ev.split(spec.test_size, s)
                r = evaluate(train, test, routers=("route-switch",), estimator_params=params, operating_point=False)
                rs = r["routers"]["route-switch"]
                rows.append({"seed": s, "aiq": rs["aiq"], "cost_ratio_at_95": rs["cost_ratio_at_95"],
                             "cost_ratio_at_100": rs["cost_ratio_at_100"], "anchored_aiq": rs["anchored"]["aiq"],
                             "anchored_cost_ratio_at_100": rs["anchored"]["cost_ratio_at_100"]})
                print(json.dumps({"spec": name, "encoder": label, **rows[-1]}), flush=True)
            res[label] = {m: describe([r[m] for r in rows]) for m in rows[0] if m != "seed"}
            res[label]["per_seed"] = rows
        train, test = ev.split(spec.test_size, 0)
        res["tfidf"]["predict_ms_p50"] = latency_ms({}, train, test)
        res["minilm-onnx"]["predict_ms_p50"] = latency_ms({"encoder": "minilm-onnx"}, train.subset(np.arange(300)), test)
        out["specs"][name] = res
    out["load_average_end"] = list(os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({n: {e: {k: v for k, v in d.items() if k != "per_seed"} for e, d in r.items()}
                      for n, r in out["specs"].items()}, indent=1))


if __name__ == "__main__":
    main()
