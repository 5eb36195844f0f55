"""Joint calibration of the policy thresholds: the UNION of background matches stays within the
allowance, every policy keeps its examples. Pure score matrices and a deterministic FAKE encoder
(hashed bag of words), so these run without the minilm extra."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from route_switch.llm.policies import Policy
from route_switch.llm.policy_match import PolicyMatcher, joint_thresholds


class FakeHashEncoder:
    """FAKE sentence encoder: the L2-normalised sum of a fixed pseudo-random vector per word."""

    dim = 256

    def _word(self, w: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b(w.lower().encode(), digest_size=8).digest(), "little")
        return np.random.default_rng(seed).standard_normal(self.dim)

    def embed(self, texts) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            words = [w.strip(".,?!:\"'()") for w in t.split()]
            v = sum((self._word(w) for w in words if w), np.zeros(self.dim))
            out[i] = v / max(np.linalg.norm(v), 1e-12)
        return out


def _union(scores, t):
    return int((np.asarray(scores) >= np.asarray(t)[:, None]).any(0).sum())


def test_union_within_allowance_and_thresholds_only_rise():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((5, 500))
    cap = np.full(5, 10.0)
    alone = joint_thresholds(scores[:1], [-np.inf], cap[:1], 10)
    assert (scores[0] >= alone[0]).sum() == 10  # one policy: exactly its allowance
    t = joint_thresholds(scores, np.full(5, -np.inf), cap, 10)
    assert _union(scores, t) <= 10
    per_policy = [joint_thresholds(scores[i:i + 1], [-np.inf], cap[i:i + 1], 10)[0] for i in range(5)]
    assert (t >= np.array(per_policy)).all()  # joint calibration never lowers a threshold
    assert _union(scores, per_policy) > 30  # what five separate 2% allowances let through


def test_examples_cap_and_counter_example_floor():
    scores = np.array([[5.0, 0.0, 3.0, 0.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0, 0.0, 0.0], np.zeros(6)])
    # Alone, each policy is within the allowance (2); together three queries match. Policy 0's
    # lowest example scores 2.5 and policy 1's 3.9: neither may rise past a background query
    # without losing an example, so the union stays at 3 and both keep their examples.
    t = joint_thresholds(scores, [-np.inf, -np.inf, 0.5], [2.5, 3.9, 9.0], 2)
    assert t[0] <= 2.5 and t[1] <= 3.9 and _union(scores, t) == 3
    assert t[2] >= 0.5  # the counter-example floor holds even when nothing pushes it up
    # A policy that alone would exceed the allowance is held to it, even at its examples' cost.
    t = joint_thresholds(np.array([[5.0, 4.0, 3.0, 0.0]]), [-np.inf], [3.5], 1)
    assert t[0] > 4.0


def test_tied_scores_are_dropped_together():
    scores = np.array([[1.0] * 50 + [0.0] * 50])
    t = joint_thresholds(scores, [-np.inf], [5.0], 10)
    assert _union(scores, t) == 0  # 50 tied scores cannot be split: all out, not 50 in


@pytest.mark.parametrize("order", ["least-like", "least-margin", "most-numerous"])
def test_the_allowance_goes_to_the_policy_whose_matches_look_like_its_examples(order):
    # Policy 0: background matches far below its examples (10). Policy 1: background matches
    # close to its examples (1.0) — likely its own topic. Allowance 3: policy 0 gives way.
    s0 = np.r_[np.linspace(2.0, 2.2, 3), np.zeros(97)]
    s1 = np.r_[np.zeros(3), np.linspace(0.8, 0.9, 3), np.zeros(94)]
    t = joint_thresholds(np.vstack([s0, s1]), [-np.inf, -np.inf], [10.0, 1.0], 3, order=order)
    assert _union(np.vstack([s0, s1]), t) <= 3
    if order == "least-like":
        assert (s1 >= t[1]).sum() == 3 and (s0 >= t[0]).sum() == 0


def test_matcher_reports_a_joint_calibration_with_a_fake_encoder():
    rng = np.random.default_rng(1)
    vocab = [f"w{i}" for i in range(300)]
    background = [" ".join(rng.choice(vocab, 8)) for _ in range(400)]
    policies = [Policy(f"topic{i} alpha{i}", 1 + i % 3, (f"alpha{i} beta{i} gamma{i} question",)) for i in range(5)]
    # Background queries that share words with each policy's example: each policy alone may match a few.
    background += [f"alpha{i} beta{i} " + " ".join(rng.choice(vocab, 6)) for i in range(5) for _ in range(6)]
    m = PolicyMatcher(encoder=FakeHashEncoder(), max_background_rate=0.02).fit(policies, background)
    assert m.background_union_pct_ <= 2.0
    assert [c["examples_matched"] for c in m.calibration_] == ["1/1"] * 5
    assert sum(c["background_matched_only_here"] for c in m.calibration_) <= 0.02 * len(background)
    for i, p in enumerate(policies):
        assert m.match(p.examples[0]).policy == p
    # Calibrated one at a time, the same policies let far more of the background through.
    separate = set()
    for p in policies:
        one = PolicyMatcher(encoder=FakeHashEncoder(), max_background_rate=0.02).fit([p], background)
        assert one.calibration_[0]["background_matched_pct"] <= 2.0
        separate |= {q for q in background if one.match(q) is not None}
    assert len(separate) > 0.04 * len(background)


class CountingFakeEncoder(FakeHashEncoder):
    """FAKE 'expensive' encoder that counts the texts it embeds."""

    def __init__(self):
        self.calls = 0

    def embed(self, texts):
        self.calls += len(texts)
        return super().embed(texts)


class FakeGateEncoder(FakeHashEncoder):
    """FAKE 'cheap' encoder: the same space, but reads only the first six words (a lossy view)."""

    def embed(self, texts):
        return super().embed([" ".join(t.split()[:6]) for t in texts])


def test_gate_skips_the_encoder_and_never_changes_a_decision_it_lets_through():
    rng = np.random.default_rng(2)
    vocab = [f"w{i}" for i in range(300)]
    background = [" ".join(rng.choice(vocab, 8)) for _ in range(400)]
    policies = [Policy(f"topic{i} alpha{i}", 1 + i % 3, (f"alpha{i} beta{i} gamma{i} question",)) for i in range(4)]
    enc = CountingFakeEncoder()
    gated = PolicyMatcher(encoder=enc, gate_encoder=FakeGateEncoder(), gate_rate=0.1).fit(policies, background)
    plain = PolicyMatcher(encoder=FakeHashEncoder(), gate_rate=None).fit(policies, background)
    assert np.allclose(gated.threshold_, plain.threshold_)  # the gate does not move the calibration
    assert gated.gate_["background_passed_pct"] <= 10.0
    for p in policies:  # every example opens the gate and is matched as without the gate
        assert gated.match(p.examples[0]).policy == plain.match(p.examples[0]).policy
    queries = [" ".join(rng.choice(vocab, 8)) for _ in range(200)]
    enc.calls = 0
    got = [gated.match(q) for q in queries]
    assert enc.calls <= 2 * 0.3 * len(queries)  # most queries never reach the expensive encoder
    opened = (gated._gate_scores(queries) >= gated.gate_threshold_).any(1)
    assert 0 < opened.sum() < len(queries)
    for q, g, o in zip(queries, got, opened):
        want = plain.match(q)
        if o:
            assert (g is None and want is None) or g.policy == want.policy
        else:
            assert g is None
