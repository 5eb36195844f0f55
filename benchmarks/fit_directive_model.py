"""Fit the learned directive detector (:mod:`route_switch.core.directive_model`) and write its weights.

    python benchmarks/fit_directive_model.py [--out route_switch/data/directive_ngrams.json] [--check]

Directives: every directive of the tuned injection corpora (``TUNED`` below). Not directives: the
segments of those corpora's legitimate prompts and of the tasks their directives were added to, and
the segments of up to ``--prompts`` prompts of each shared set except dcrouter (the injection
benchmark measures on dcrouter queries, so its clean queries stay unseen). A held-out corpus joins
``TUNED`` only after its one blind run (``injection_heldout6.yaml`` judged the first model,
``injection_heldout7.yaml`` the second, ``injection_heldout8.yaml`` the third, ``injection_heldout9.yaml``
the fourth, ``injection_heldout10.yaml`` the fifth, which is not read here yet).

Reports, leaving one tuned corpus out at a time (its directives and legitimate prompts unseen, as a
new phrasing would be): the share of its directives scored at or above the threshold, its
legitimate segments scored so, and the share of unseen shared-prompt segments scored so. Prints JSON;
``--check`` fits and reports without writing.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from _common import read_corpus_yaml  # noqa: E402
from route_switch.core import sanitize  # noqa: E402
from route_switch.core.directive_model import MODEL_FILE, DirectiveModel  # noqa: E402

TUNED = ("directive_training", "injection_corpus", "injection_heldout", "injection_heldout2", "injection_heldout3",
         "injection_heldout4", "injection_heldout5", "injection_heldout6", "injection_heldout7", "injection_heldout8",
         "injection_heldout9")
SHARED = ("routellm", "zeroeval", "alpacaeval2")


def _text(x) -> str:
    return " ".join(x) if isinstance(x, list) else str(x)


def segments(text: str) -> list[str]:
    """The segments the sanitiser reads, of the text as it reads it (folded, quoted mentions masked)."""
    folded = sanitize._mask_mentions(sanitize.fold(text)[0])
    return [s for s in sanitize._segments(folded) if sanitize._WORD.search(s)]


def corpus_examples(name: str) -> tuple[list[str], list[str]]:
    """(directives, segments that are not) of one injection corpus."""
    d = read_corpus_yaml(HERE / f"{name}.yaml")
    pos, neg = [], []
    for x in d.get("directives") or []:
        if "directive" in x:
            pos.append(sanitize.fold(x["directive"])[0])
            neg += segments(x["query"].replace(x["directive"], " "))
        else:
            pos.append(sanitize.fold(_text(x["text"]))[0])
    for key in ("heldout", "heldout_unicode"):
        pos += [sanitize.fold(_text(x.get("text", "") if isinstance(x, dict) else x))[0] for x in d.get(key) or []]
    for x in d.get("legitimate") or []:
        neg += segments(x["query"] if isinstance(x, dict) else x)
    pos += [sanitize.fold(_text(x))[0] for x in d.get("directives_text") or []]
    neg += [n for x in d.get("not_directives") or [] for n in segments(x)]
    return [p for p in pos if p.strip()], neg


def shared_segments(data_dir: Path, per_set: int, seed: int = 0) -> list[str]:
    import pandas as pd

    out = []
    for name in SHARED:
        prompts = pd.read_parquet(data_dir / f"{name}.parquet", columns=["prompt"])["prompt"].drop_duplicates()
        for p in prompts.sample(min(per_set, len(prompts)), random_state=seed):
            out += segments(p[:3000])
    random.Random(seed).shuffle(out)
    return out


def glued(texts: list[str]) -> list[str]:
    """The texts with their spaces gone, as zero-width characters used as word separators leave them
    once folded ("Use\u200bthe\u200bbest\u200bmodel")."""
    return [t.replace(" ", "") for t in texts if t.count(" ") >= 2]


def fit(pos, neg, **kw) -> DirectiveModel:
    """The model fitted on the directives ``pos`` and the other segments ``neg``, each also glued (so
    glued words are read as the words, not as a sign of a directive)."""
    pos, neg = pos + glued(pos), neg + glued(neg[:len(pos)] + neg[-len(pos):])
    return DirectiveModel(**kw).fit(pos + neg, [1] * len(pos) + [0] * len(neg))


def pooled(corpora: dict, shared: list[str], left: str | None = None) -> tuple[list[str], list[str]]:
    """(directives, other segments) of every corpus but ``left``, the shared segments among the others."""
    kept = [v for k, v in corpora.items() if k != left]
    return [p for ps, _ in kept for p in ps], [n for _, ns in kept for n in ns] + shared


def leave_one_corpus_out(corpora: dict, shared: list[str], **kw) -> dict:
    """Recall and false positives per left-out corpus (shared segments split in two halves)."""
    half = len(shared) // 2
    report = {}
    for left in corpora:
        m = fit(*pooled(corpora, shared[:half], left), **kw)
        ps, ns = corpora[left]
        report[left] = {"directives": len(ps), "recall": round(float(np.mean(m.predict_proba(ps) >= m.threshold)), 3),
                        "legit_segments": len(ns), "legit_flagged": int(np.sum(m.predict_proba(ns) >= m.threshold))}
    m = fit(*pooled(corpora, shared[:half]), **kw)
    report["shared_flagged_pct"] = round(100 * float(np.mean(m.predict_proba(shared[half:]) >= m.threshold)), 3)
    report["recall_mean"] = round(float(np.mean([r["recall"] for k, r in report.items() if isinstance(r, dict)])), 3)
    return report


def main(argv=None) -> int:
    from route_switch.core.paths import data_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=MODEL_FILE)
    ap.add_argument("--prompts", type=int, default=6000, help="prompts per shared set")
    ap.add_argument("--C", type=float, default=4.0)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--min-weight", type=float, default=0.15, help="n-grams lighter than this are not stored")
    ap.add_argument("--check", action="store_true", help="report only; do not write the model")
    a = ap.parse_args(argv)
    corpora = {name: corpus_examples(name) for name in TUNED}
    shared = shared_segments(data_dir(), a.prompts)
    kw = {"C": a.C, "threshold": a.threshold, "min_weight": a.min_weight}
    report = {"params": kw, "leave_one_corpus_out": leave_one_corpus_out(corpora, shared, **kw)}
    if not a.check:
        pos, neg = pooled(corpora, shared)
        model = fit(pos, neg, **kw)
        d = model.to_dict() | {"trained_on": {"corpora": list(TUNED), "shared_sets": list(SHARED),
                                              "directives": len(pos), "other_segments": len(neg)}}
        from route_switch.core.files import atomic_write_text

        atomic_write_text(a.out, json.dumps(d, ensure_ascii=False, indent=0) + "\n")
        report["written"] = str(a.out)
        report["ngrams"] = len(model.weights_)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
