"""Evalsets: queries with, per candidate model, a quality score (0..1) and a cost (USD).

In memory an :class:`Evalset` is a table of queries plus two aligned ``n_queries x n_models``
matrices, ``scores`` and ``costs``. On disk route-switch reads

* the **long** format (one row per query x model): columns ``prompt``, ``model``, ``score``,
  ``cost_usd`` (or ``cost``) and optionally ``id``, ``task``, ``split``, ``in_tokens``,
  ``out_tokens``; as ``.parquet``, ``.jsonl`` or ``.csv``;
* RouterBench's **wide** format (one row per query): ``prompt``, optional ``sample_id`` and
  ``eval_name``, then per model a score column ``<model>`` and a cost column
  ``<model>|total_cost``; as ``.pkl`` is NOT accepted (pickles are never loaded) — convert it
  to parquet/CSV/JSONL first.

Duplicate prompts (same text after Unicode (NFKC, zero-width characters dropped), whitespace
and case normalisation) are collapsed to their first occurrence, so the same question can never
sit on both sides of a train/test split; the number dropped is kept in
``Evalset.n_duplicates_dropped``.
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from route_switch.core.errors import EvalsetError

LONG_REQUIRED = ("prompt", "model", "score")
COST_COLUMNS = ("cost_usd", "cost")
WIDE_COST_SUFFIX = "|total_cost"


@dataclass
class Evalset:
    """Queries x models outcome matrices. Row i of ``scores``/``costs`` is ``queries.iloc[i]``."""

    queries: pd.DataFrame  # columns: id, prompt, task, split
    models: list[str]
    scores: np.ndarray
    costs: np.ndarray
    source: str = ""
    n_duplicates_dropped: int = 0
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def prompts(self) -> list[str]:
        return self.queries["prompt"].tolist()

    def select_models(self, models: Sequence[str]) -> "Evalset":
        """Keep only ``models`` (in that order); unknown names raise naming the file and field."""
        unknown = [m for m in models if m not in self.models]
        if unknown:
            raise EvalsetError(f"unknown model(s) {unknown}; the evalset has {self.models}",
                               file=self.source, field="model")
        idx = [self.models.index(m) for m in models]
        return self._replace(models=list(models), scores=self.scores[:, idx], costs=self.costs[:, idx])

    def subset(self, rows: Sequence[int] | np.ndarray) -> "Evalset":
        rows = np.asarray(rows, dtype=int)
        return self._replace(queries=self.queries.iloc[rows].reset_index(drop=True),
                             scores=self.scores[rows], costs=self.costs[rows])

    def split(self, test_size: float = 0.3, seed: int = 0) -> tuple["Evalset", "Evalset"]:
        """Random train/test split of queries (reproducible for a given seed)."""
        if not 0.0 < test_size < 1.0:
            raise EvalsetError(f"test_size must be in (0, 1), got {test_size}", field="test_size")
        if len(self) < 2:
            raise EvalsetError("need at least 2 queries to split", file=self.source)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(self))
        n_test = max(1, int(round(test_size * len(self))))
        return self.subset(np.sort(order[n_test:])), self.subset(np.sort(order[:n_test]))

    def by_source_split(self, name: str) -> "Evalset":
        """Rows whose source ``split`` column equals ``name`` (e.g. 'train'/'test')."""
        return self.subset(np.flatnonzero(self.queries["split"].to_numpy() == name))

    def content_hash(self) -> str:
        """A short hash of prompts, models, scores and costs: identifies the data an artifact saw."""
        h = hashlib.sha256()
        h.update(json.dumps(self.models).encode())
        for p in self.prompts:
            h.update(p.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        h.update(np.ascontiguousarray(self.scores, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(self.costs, dtype=np.float64).tobytes())
        return h.hexdigest()[:16]

    def to_long(self) -> pd.DataFrame:
        """The long format (one row per query x model), as written by :func:`save_evalset`."""
        n, m = self.scores.shape
        q = self.queries.loc[np.repeat(np.arange(n), m)].reset_index(drop=True)
        q["model"] = self.models * n
        q["score"] = self.scores.reshape(-1)
        q["cost_usd"] = self.costs.reshape(-1)
        return q

    def _replace(self, **kw) -> "Evalset":
        d = dict(queries=self.queries, models=self.models, scores=self.scores, costs=self.costs,
                 source=self.source, n_duplicates_dropped=self.n_duplicates_dropped, meta=dict(self.meta))
        d.update(kw)
        return Evalset(**d)


def normalise_prompt(text: str) -> str:
    """Key for duplicate detection: NFKC (full-width letters, no-break spaces), format characters
    (category Cf: zero-width spaces, joiners, BOM) dropped, whitespace collapsed, case-folded."""
    text = str(text)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
        text = "".join(c for c in text if unicodedata.category(c) != "Cf") if not text.isascii() else text
    return re.sub(r"\s+", " ", text).strip().casefold()


# ----------------------------------------------------------------------------- reading files

def read_table(path: str | Path) -> pd.DataFrame:
    """Read parquet / CSV / JSONL into a DataFrame, with errors that name the file."""
    path = Path(path)
    if not path.exists():
        raise EvalsetError("file not found", file=str(path))
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix in (".csv", ".csv.gz"):
            df = pd.read_csv(path)
        elif suffix in (".jsonl", ".jsonl.gz", ".json"):
            df = _read_jsonl(path)
        elif suffix in (".pkl", ".pickle"):
            raise EvalsetError("pickle files are never loaded (they can run code); convert to "
                               "parquet, CSV or JSONL", file=str(path))
        else:
            raise EvalsetError(f"unsupported file type '{suffix}' (use .parquet, .csv or .jsonl)",
                               file=str(path))
    except EvalsetError:
        raise
    except pd.errors.EmptyDataError:
        raise EvalsetError("file is empty", file=str(path)) from None
    except Exception as e:  # parser errors from pandas/pyarrow: keep their message, name the file
        raise EvalsetError(f"cannot parse: {e}", file=str(path)) from None
    if df.empty:
        raise EvalsetError("file has no rows", file=str(path))
    return df


def _read_jsonl(path: Path) -> pd.DataFrame:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise EvalsetError(f"invalid JSON: {e.msg}", file=str(path), line=lineno) from None
            if not isinstance(obj, dict):
                raise EvalsetError("each line must be a JSON object", file=str(path), line=lineno)
            rows.append(obj)
    if not rows:
        raise EvalsetError("file is empty", file=str(path))
    return pd.DataFrame(rows)


def is_wide(df: pd.DataFrame) -> bool:
    return any(str(c).endswith(WIDE_COST_SUFFIX) for c in df.columns)


def wide_to_long(df: pd.DataFrame, file: str = "") -> pd.DataFrame:
    """RouterBench wide rows -> long rows (``<model>`` score, ``<model>|total_cost`` cost)."""
    if "prompt" not in df.columns:
        raise EvalsetError("missing column", file=file, field="prompt")
    models = [c[: -len(WIDE_COST_SUFFIX)] for c in df.columns if str(c).endswith(WIDE_COST_SUFFIX)]
    missing = [m for m in models if m not in df.columns]
    if missing:
        raise EvalsetError(f"cost column without a score column for {missing}", file=file, field=missing[0])
    ids = df["sample_id"] if "sample_id" in df.columns else pd.Series(range(len(df)), index=df.index)
    task = df["eval_name"] if "eval_name" in df.columns else ""
    parts = []
    for m in models:
        parts.append(pd.DataFrame({"id": ids.astype(str), "prompt": df["prompt"], "task": task,
                                   "split": "", "model": m, "score": df[m],
                                   "cost_usd": df[m + WIDE_COST_SUFFIX], "_row": np.arange(len(df)) + 1}))
    return pd.concat(parts, ignore_index=True)


def validate_long(df: pd.DataFrame, file: str = "") -> pd.DataFrame:
    """Check columns, types and ranges; return a clean long frame (``_row`` = 1-based source row)."""
    df = df.copy()
    if "_row" not in df.columns:
        df["_row"] = np.arange(len(df)) + 1
    for col in LONG_REQUIRED:
        if col not in df.columns:
            raise EvalsetError(f"missing column (found {list(df.columns)[:12]})", file=file, field=col)
    cost_col = next((c for c in COST_COLUMNS if c in df.columns), None)
    if cost_col is None:
        raise EvalsetError("missing column (cost_usd or cost)", file=file, field="cost_usd")
    if cost_col != "cost_usd":
        df = df.rename(columns={cost_col: "cost_usd"})
    for col in ("score", "cost_usd"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise EvalsetError(f"not a number: {df[col].iloc[i]!r}", file=file,
                               row=int(df["_row"].iloc[i]), field=col)
        nan = values.isna()
        if nan.any():
            i = int(np.flatnonzero(nan.to_numpy())[0])
            raise EvalsetError("missing value (NaN)", file=file, row=int(df["_row"].iloc[i]), field=col)
        df[col] = values.astype(float)
    checks = [("score", (df["score"] < 0) | (df["score"] > 1), "must be within 0..1"),
              ("cost_usd", df["cost_usd"] < 0, "must not be negative"),
              ("cost_usd", ~np.isfinite(df["cost_usd"]), "must be finite")]
    for col, bad, msg in checks:
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise EvalsetError(f"{msg}, got {df[col].iloc[i]!r}", file=file,
                               row=int(df["_row"].iloc[i]), field=col)
    for col in ("prompt", "model"):
        bad = df[col].isna() | ~df[col].map(lambda v: isinstance(v, str))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise EvalsetError(f"must be a non-empty string, got {df[col].iloc[i]!r}", file=file,
                               row=int(df["_row"].iloc[i]), field=col)
    empty = df["prompt"].map(lambda p: not p.strip())
    if empty.any():
        i = int(np.flatnonzero(empty.to_numpy())[0])
        raise EvalsetError("empty prompt: every query needs text", file=file, row=int(df["_row"].iloc[i]), field="prompt")
    if "id" not in df.columns:
        # Without ids, a query is identified by its text.
        df["id"] = df["prompt"].map(lambda p: hashlib.sha1(p.encode("utf-8", "surrogatepass")).hexdigest()[:12])
    nid = df["id"].isna() | df["id"].map(lambda v: isinstance(v, str) and not v.strip())
    if nid.any():  # astype(str) would merge every missing id into one query "nan"
        i = int(np.flatnonzero(nid.to_numpy())[0])
        raise EvalsetError(f"missing id, got {df['id'].iloc[i]!r}", file=file, row=int(df["_row"].iloc[i]), field="id")
    df["id"] = df["id"].astype(str)
    first_prompt = df.groupby("id", sort=False)["prompt"].transform("first")
    clash = (df["prompt"] != first_prompt).to_numpy()
    if clash.any():  # the scores would be attached to the first prompt only
        i = int(np.flatnonzero(clash)[0])
        raise EvalsetError(f"id {df['id'].iloc[i]!r} already names a different prompt", file=file,
                           row=int(df["_row"].iloc[i]), field="prompt")
    for col in ("task", "split"):
        df[col] = df[col].astype(object).where(df[col].notna(), "").astype(str) if col in df.columns else ""
    return df


def long_to_evalset(df: pd.DataFrame, models: Sequence[str] | None = None, file: str = "",
                    dedupe: bool = True) -> Evalset:
    """Pivot a validated long frame into an Evalset.

    ``models=None`` keeps the models that have an outcome for every query; otherwise exactly the
    given models (unknown ones raise) and the queries every one of them answered.
    """
    known = list(dict.fromkeys(df["model"]))
    if models is not None:
        unknown = [m for m in models if m not in known]
        if unknown:
            raise EvalsetError(f"unknown model(s) {unknown}; the file has {known}", file=file, field="model")
        df = df[df["model"].isin(models)]
    dup = df.duplicated(["id", "model"], keep="first")
    df = df[~dup]  # a repeated (id, model) row is a logging duplicate: first one wins
    n_ids = df["id"].nunique()
    if models is None:
        counts = df.groupby("model", sort=False)["id"].nunique()
        models = [m for m in known if counts.get(m, 0) == n_ids]
        if not models:
            raise EvalsetError("no model has an outcome for every query; pass models explicitly",
                               file=file, field="model")
        df = df[df["model"].isin(models)]
    models = list(models)
    scores = df.pivot(index="id", columns="model", values="score")
    costs = df.pivot(index="id", columns="model", values="cost_usd")
    complete = scores[models].notna().all(axis=1)
    scores, costs = scores.loc[complete, models], costs.loc[complete, models]
    if scores.empty:
        raise EvalsetError(f"no query has outcomes for all of {models}", file=file, field="model")
    first = df.drop_duplicates("id").set_index("id")
    queries = first.loc[scores.index, ["prompt", "task", "split"]].reset_index()
    n_dropped = 0
    if dedupe:
        keep = ~queries["prompt"].map(normalise_prompt).duplicated(keep="first").to_numpy()
        n_dropped = int((~keep).sum())
        queries = queries[keep].reset_index(drop=True)
        scores, costs = scores[keep], costs[keep]
    return Evalset(queries=queries, models=models, scores=scores.to_numpy(float),
                   costs=costs.to_numpy(float), source=file, n_duplicates_dropped=n_dropped)


def load_evalset(path: str | Path, models: Sequence[str] | None = None, dedupe: bool = True) -> Evalset:
    """Read an evalset file in the long or the RouterBench wide format."""
    from route_switch.core.paths import resolve_data_path

    path = resolve_data_path(path)
    df = read_table(path)
    if is_wide(df):
        df = wide_to_long(df, file=str(path))
    df = validate_long(df, file=str(path))
    return long_to_evalset(df, models=models, file=str(path), dedupe=dedupe)


def save_evalset(evalset: Evalset, path: str | Path) -> None:
    """Write an evalset in the long format (parquet, CSV or JSONL by suffix), atomically."""
    from route_switch.core.files import atomic_write_bytes, atomic_write_text

    df = evalset.to_long()
    path = Path(path)
    if path.suffix == ".parquet":
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(path, buf.getvalue())
    elif path.suffix == ".csv":
        atomic_write_text(path, df.to_csv(index=False))
    else:
        atomic_write_text(path, df.to_json(orient="records", lines=True, force_ascii=False, double_precision=15))


def from_records(records: Iterable[dict], models: Sequence[str] | None = None, source: str = "<records>") -> Evalset:
    """Build an evalset from in-memory long-format dicts (used by labelling and tests)."""
    df = pd.DataFrame(list(records))
    if df.empty:
        raise EvalsetError("no records", file=source)
    return long_to_evalset(validate_long(df, file=source), models=models, file=source)
