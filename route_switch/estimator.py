"""The learned quality estimator (IPR-style): a frozen encoder plus one linear adapter per model.

``QualityEstimator.fit`` fits the encoder once and one adapter per model; ``add_model`` trains
one more adapter against the frozen encoder; ``predict`` returns an ``n x m`` matrix of
predicted quality in 0..1. All adapters are stacked into one sparse weight matrix so a query is
scored for every model with a single product.

Adapters: logistic regression for 0/1 outcomes, ridge regression (clipped to 0..1) for graded
judge scores.

Saved as a directory: ``estimator.json`` (readable parameters, models, unit costs) and
``arrays.npz`` (numbers only, loaded with ``allow_pickle=False``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .encoders import Encoder, make_encoder, ENCODERS
from .errors import ArtifactError

FORMAT_VERSION = 1


def _is_binary(y: np.ndarray) -> bool:
    return bool(np.all((y == 0) | (y == 1)))


class QualityEstimator:
    """Predicts each model's quality for a query. Hyper-parameters in ``__init__``, learned state ends in ``_``."""

    def __init__(self, encoder: str = "hashed-tfidf", encoder_params: dict | None = None, C: float = 1.0,
                 alpha: float = 1.0, class_weight: str | None = None):
        self.encoder, self.encoder_params = encoder, dict(encoder_params or {})
        self.C, self.alpha, self.class_weight = C, alpha, class_weight
        self.encoder_: Encoder | None = None
        self.models_: list[str] = []
        self.unit_cost_ = np.zeros(0)
        self.coef_ = None      # scipy.sparse (n_features x n_models)
        self.intercept_ = np.zeros(0)
        self.link_: list[str] = []  # "logit" or "identity" per model
        self.meta_: dict = {}

    # ------------------------------------------------------------------ fitting
    def fit(self, prompts: Sequence[str], scores: np.ndarray, models: Sequence[str], costs: np.ndarray | None = None):
        """Fit the encoder on ``prompts``, then one adapter per column of ``scores``."""
        import scipy.sparse as sp

        prompts = list(prompts)
        scores = np.asarray(scores, float)
        self.encoder_ = make_encoder(self.encoder, **self.encoder_params).fit(prompts)
        X = self.encoder_.transform(prompts)
        cols, b, links = [], [], []
        for j in range(scores.shape[1]):
            w, b0, link = self._fit_adapter(X, scores[:, j])
            cols.append(w)
            b.append(b0)
            links.append(link)
        self.coef_ = sp.csr_matrix(np.column_stack(cols).astype(np.float32)) if cols else None
        self.intercept_ = np.asarray(b, np.float32)
        self.link_ = links
        self.models_ = list(models)
        self.unit_cost_ = (np.asarray(costs, float).mean(axis=0) if costs is not None
                           else np.ones(len(self.models_)))
        self.meta_ = {"n_train": len(prompts), "fitted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return self

    def _fit_adapter(self, X, y: np.ndarray) -> tuple[np.ndarray, float, str]:
        if _is_binary(y):
            if y.min() == y.max():  # a model always right (or always wrong) on the training set
                p = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
                return np.zeros(X.shape[1]), float(np.log(p / (1 - p))), "logit"
            from sklearn.linear_model import LogisticRegression

            lr = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=2000)
            lr.fit(X, y.astype(int))
            return lr.coef_[0], float(lr.intercept_[0]), "logit"
        from sklearn.linear_model import Ridge

        r = Ridge(alpha=self.alpha).fit(X, y)
        return r.coef_, float(r.intercept_), "identity"

    def add_model(self, name: str, prompts: Sequence[str], scores: np.ndarray, unit_cost: float):
        """Train one adapter for a new model against the frozen encoder (the encoder is not refitted)."""
        import scipy.sparse as sp

        self._check_fitted()
        if name in self.models_:
            raise ValueError(f"model '{name}' already has an adapter")
        X = self.encoder_.transform(list(prompts))
        w, b0, link = self._fit_adapter(X, np.asarray(scores, float))
        self.coef_ = sp.hstack([self.coef_, sp.csr_matrix(w.astype(np.float32)[:, None])]).tocsr()
        self.intercept_ = np.append(self.intercept_, np.float32(b0))
        self.link_.append(link)
        self.models_.append(name)
        self.unit_cost_ = np.append(self.unit_cost_, float(unit_cost))
        return self

    # ------------------------------------------------------------------ predicting
    def predict(self, prompts: Sequence[str]) -> np.ndarray:
        """Predicted quality in 0..1, shape (n_prompts, n_models)."""
        self._check_fitted()
        X = self.encoder_.transform(list(prompts))
        Z = X @ self.coef_
        z = (Z.toarray() if hasattr(Z, "toarray") else np.asarray(Z)) + self.intercept_[None, :]
        logit = np.array([l == "logit" for l in self.link_])
        out = np.empty_like(z, dtype=float)
        out[:, logit] = 1.0 / (1.0 + np.exp(-z[:, logit]))
        out[:, ~logit] = np.clip(z[:, ~logit], 0.0, 1.0)
        return out

    def _check_fitted(self):
        if self.encoder_ is None or self.coef_ is None:
            raise RuntimeError("QualityEstimator is not fitted: call fit() or QualityEstimator.load()")

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``estimator.json`` + ``arrays.npz`` atomically into ``directory``."""
        import io

        from .paths import atomic_write_bytes, atomic_write_text

        self._check_fitted()
        d = Path(directory)
        enc_params, enc_arrays = self.encoder_.get_state()
        W = self.coef_.tocsr()
        arrays = {f"encoder.{k}": v for k, v in enc_arrays.items()}
        arrays.update({"coef.data": W.data, "coef.indices": W.indices, "coef.indptr": W.indptr,
                       "coef.shape": np.array(W.shape), "intercept": self.intercept_,
                       "unit_cost": self.unit_cost_})
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(d / "arrays.npz", buf.getvalue())
        doc = {"format": "route-switch-estimator", "version": FORMAT_VERSION,
               "encoder": {"name": self.encoder, "params": enc_params},
               "hyperparameters": {"C": self.C, "alpha": self.alpha, "class_weight": self.class_weight},
               "models": self.models_, "links": self.link_,
               "unit_cost": [float(c) for c in self.unit_cost_], "meta": self.meta_}
        atomic_write_text(d / "estimator.json", json.dumps(doc, indent=2) + "\n")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "QualityEstimator":
        """Load a saved estimator; anything missing or inconsistent raises ArtifactError naming the file."""
        import scipy.sparse as sp

        d = Path(directory)
        jf, af = d / "estimator.json", d / "arrays.npz"
        for f in (jf, af):
            if not f.exists():
                raise ArtifactError("missing (fit an estimator first: route-switch fit ...)", file=str(f))
        try:
            doc = json.loads(jf.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ArtifactError(f"not valid JSON: {e}", file=str(jf)) from None
        if not isinstance(doc, dict) or doc.get("format") != "route-switch-estimator":
            raise ArtifactError("not a route-switch estimator file", file=str(jf), field="format")
        try:
            with np.load(af, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:
            raise ArtifactError(f"unreadable numpy archive: {e}", file=str(af)) from None
        try:
            hp = doc["hyperparameters"]
            est = cls(encoder=doc["encoder"]["name"], encoder_params=doc["encoder"]["params"], C=hp["C"],
                      alpha=hp["alpha"], class_weight=hp.get("class_weight"))
            if est.encoder not in ENCODERS:
                raise ArtifactError(f"unknown encoder '{est.encoder}'", file=str(jf), field="encoder.name")
            enc_arrays = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("encoder.")}
            est.encoder_ = ENCODERS[est.encoder].from_state(doc["encoder"]["params"], enc_arrays)
            shape = tuple(int(x) for x in arrays["coef.shape"])
            est.coef_ = sp.csr_matrix((arrays["coef.data"], arrays["coef.indices"], arrays["coef.indptr"]), shape=shape)
            est.intercept_ = arrays["intercept"].astype(np.float32)
            est.unit_cost_ = arrays["unit_cost"].astype(float)
            est.models_, est.link_, est.meta_ = list(doc["models"]), list(doc["links"]), dict(doc.get("meta", {}))
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"inconsistent estimator files: {e!r}", file=str(d)) from None
        m = len(est.models_)
        if est.coef_.shape[1] != m or len(est.intercept_) != m or len(est.link_) != m or len(est.unit_cost_) != m:
            raise ArtifactError(f"arrays do not match the {m} models listed", file=str(af))
        return est
