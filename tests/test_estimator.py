"""The quality estimator: learns difficulty, saves/loads safely, adds a model without refitting the encoder."""
from __future__ import annotations

import json

import numpy as np
import pytest

from route_switch.core.errors import ArtifactError
from route_switch.core.estimator import QualityEstimator


@pytest.fixture(scope="module")
def fitted(synthetic):
    train, test = synthetic.split(0.3, seed=0)
    return QualityEstimator().fit(train.prompts, train.scores, train.models, train.costs), train, test


def test_predicts_small_model_fails_hard_queries(fitted):
    est, _, test = fitted
    pred = est.predict(test.prompts)
    assert pred.shape == (len(test), 3) and ((0 <= pred) & (pred <= 1)).all()
    hard = (test.queries["task"] == "hard").to_numpy()
    small = est.models_.index("small")
    assert pred[hard, small].mean() < 0.4 < 0.7 < pred[~hard, small].mean()


def test_save_load_round_trip(fitted, tmp_path):
    est, _, test = fitted
    est.save(tmp_path / "e")
    back = QualityEstimator.load(tmp_path / "e")
    assert back.models_ == est.models_
    np.testing.assert_allclose(back.predict(test.prompts), est.predict(test.prompts), atol=1e-6)
    doc = json.loads((tmp_path / "e" / "estimator.json").read_text())
    assert doc["encoder"]["name"] == "tfidf" and doc["models"] == est.models_


def test_add_model_trains_only_its_adapter(fitted):
    est, train, test = fitted
    before = est.predict(test.prompts)
    idf, vocab = est.encoder_.idf_.copy(), dict(est.encoder_.vocabulary_)
    e = QualityEstimator().fit(train.prompts, train.scores, train.models, train.costs)
    e.add_model("clone-of-large", train.prompts, train.scores[:, train.models.index("large")], unit_cost=0.05)
    after = e.predict(test.prompts)
    np.testing.assert_allclose(after[:, :3], before, atol=1e-6)
    np.testing.assert_array_equal(e.encoder_.idf_, idf)
    assert e.encoder_.vocabulary_ == vocab
    np.testing.assert_allclose(after[:, 3], before[:, train.models.index("large")], atol=1e-5)
    with pytest.raises(ValueError):
        e.add_model("small", train.prompts, train.scores[:, 0], unit_cost=1)


def test_graded_scores_are_soft_labels(synthetic):
    # judge-like probabilities: 0.15 where the model failed, 0.85 where it succeeded
    scores = synthetic.scores * 0.7 + 0.15
    est = QualityEstimator().fit(synthetic.prompts, scores, synthetic.models, synthetic.costs)
    p = est.predict(synthetic.prompts)
    assert ((0.1 <= p) & (p <= 0.9)).all()  # soft targets never push predictions to 0 or 1
    hard = (synthetic.queries["task"] == "hard").to_numpy()
    assert p[hard, 0].mean() < p[~hard, 0].mean() - 0.3


@pytest.mark.parametrize("damage", ["missing_json", "bad_json", "wrong_format", "bad_npz", "short_arrays"])
def test_corrupt_artifacts_name_the_file(fitted, tmp_path, damage):
    est, _, _ = fitted
    d = est.save(tmp_path / "e")
    if damage == "missing_json":
        (d / "estimator.json").unlink()
    elif damage == "bad_json":
        (d / "estimator.json").write_text("{not json")
    elif damage == "wrong_format":
        (d / "estimator.json").write_text(json.dumps({"format": "something-else"}))
    elif damage == "bad_npz":
        (d / "arrays.npz").write_bytes(b"garbage")
    else:
        doc = json.loads((d / "estimator.json").read_text())
        doc["models"].append("ghost")
        (d / "estimator.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError) as e:
        QualityEstimator.load(d)
    assert str(d) in str(e.value)


def test_scikit_learn_conventions():
    import inspect

    from sklearn.base import clone

    from route_switch.testing.synthetic import synthetic_evalset

    assert list(QualityEstimator().get_params()) == list(inspect.signature(QualityEstimator.__init__).parameters)[1:]
    params = {"encoder": "tfidf", "encoder_params": {"min_df": 1}, "C": 0.5, "k": 10, "prior": 2.0, "w": 0.3,
              "cv": 2, "grid": {"w": [0.3, 0.6]}}
    est = QualityEstimator(**params)
    assert est.get_params() == params and est.encoder_params is params["encoder_params"]  # stored unchanged
    assert not hasattr(est, "models_") and not hasattr(est, "coef_")  # learned attributes come from fit
    assert est.set_params(k=12) is est and est.k == 12 and "k=12" in repr(est)
    with pytest.raises(ValueError, match="nope"):
        est.set_params(nope=1)
    ev = synthetic_evalset()
    est.fit(ev.prompts, ev.scores, ev.models, ev.costs)
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "coef_")
    twin.fit(ev.prompts, ev.scores, ev.models, ev.costs)
    np.testing.assert_allclose(twin.predict(ev.prompts[:20]), est.predict(ev.prompts[:20]))
    with pytest.raises(RuntimeError, match="not fitted"):
        QualityEstimator().predict(["x"])
