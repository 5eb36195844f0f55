"""FAKES for tests and benchmarks: a deterministic router engine that needs no model.

- ``FakeRouterEngine``: the engine behind ``{kind: fake}`` LM configs (see :mod:`route_switch.llm.lm`);
  it answers in the layout dspy.ChatAdapter parses, like the real engines in :mod:`route_switch.llm.engines`.
- ``default_rule``: its FAKE keyword difficulty rule; ``fake_policy_tier``: its FAKE policy following;
  ``FAKE_PROPOSALS``: the instructions it proposes to an optimiser.
"""
from __future__ import annotations

import re
import time

from route_switch.core.tiers import to_index
from route_switch.llm.engines import _layout, _request_messages, _response, single_output_field

HARD_WORDS = ("prove", "derive", "implement", "algorithm", "refactor", "debug", "optimi", "step by step",
              "integral", "theorem", "complexity", "design")
MEDIUM_WORDS = ("explain", "why", "compare", "summar", "calculate", "translate", "code", "write")


def default_rule(query: str, n_tiers: int) -> int:
    """FAKE difficulty rule: 1-based tier from keywords (hard -> top, medium -> middle)."""
    q = query.lower()
    if any(w in q for w in HARD_WORDS):
        return n_tiers
    if any(w in q for w in MEDIUM_WORDS) or len(q) > 300:
        return max(1, (n_tiers + 1) // 2)
    return 1


FAKE_PROPOSALS = ("Prefer tier 1 for short factual questions.", "Send proofs and multi-step math to the top tier.",
                  "Code that must run correctly needs a larger tier.", "When unsure, pick the middle tier.",
                  "Please provide me with a detailed description of the task.")


def fake_policy_tier(system: str, query: str) -> int | None:
    """FAKE policy following: the tier of the first policy line (route_switch.llm.policies) whose topic
    shares a word with the query (words of 4+ letters, compared on their first 5 letters)."""
    from route_switch.llm.policies import PolicyError, Policy

    stems = lambda text: {w[:5] for w in re.findall(r"[a-z]{4,}", text.lower())}
    for line in system.splitlines():
        try:
            policy = Policy.parse(line)
        except PolicyError:
            continue
        if stems(policy.topic) & stems(query):
            return policy.tier
    return None


def _nearest_demo(messages: list[dict], query: str) -> str | None:
    """FAKE demo copying: the label of the demo (user/assistant pair) sharing most 4+-letter words with the query."""
    words = lambda text: set(re.findall(r"[a-z]{4,}", text.lower()))  # noqa: E731
    best, label = 0, None
    for user, reply in zip(messages[1:-1:2], messages[2:-1:2]):
        q = re.search(r"\[\[ ## query ## \]\]\n(.*)", user["content"], re.S)
        t = re.search(r"\[\[ ## tier ## \]\]\n(\S+)", reply["content"])
        if q and t and len(words(q.group(1)) & words(query)) > best:
            best, label = len(words(q.group(1)) & words(query)), t.group(1)
    return label


class FakeRouterEngine:
    """FAKE engine for unit tests: deterministic answers, no model.

    mode: "rule" (keyword rule on the query), "fixed" (always `fixed_label`),
    "fail" (raises), "timeout" (sleeps `delay_s`, default 5 s, then answers by rule),
    "garbage" (unparseable text), "out_of_range" (a label not in `labels`), "policy" (the rule,
    overridden by a matching policy line of the system prompt, see ``fake_policy_tier``),
    "demos" (the rule, but a query it sends to a middle tier gets the label of the demo sharing
    most words with it, when any does: a FAKE of a small model copying its demos).
    Any mode sleeps `delay_s` first when it is set. A system prompt containing
    FAKE_PROPOSALS[0] ("prefer tier 1") makes the rule answer tier 1, so an optimiser
    has a better instruction to find; other one-field requests (instruction proposals)
    get FAKE_PROPOSALS in turn. `calls` records the queries seen.
    """

    forces_layout = False

    def __init__(self, labels=("1", "2", "3"), mode: str = "rule", output_field: str = "tier",
                 fixed_label: str | None = None, delay_s: float = 0.0, rule=None):
        self.labels = tuple(str(x) for x in labels)
        self.mode, self.output_field = mode, output_field
        self.fixed_label, self.delay_s, self.rule = fixed_label, delay_s, rule or default_rule
        self.calls: list[str] = []
        self._proposals = 0

    def dump_state(self) -> dict:
        return {"labels": list(self.labels), "mode": self.mode, "output_field": self.output_field,
                "fixed_label": self.fixed_label, "delay_s": self.delay_s}

    @classmethod
    def load_state(cls, state: dict) -> "FakeRouterEngine":
        return cls(**state)

    def __deepcopy__(self, memo):
        return self

    def complete(self, request):
        from dspy.clients.engines.base import validate_request

        validate_request(request)
        messages = _request_messages(request)
        field = single_output_field(messages)
        if field is not None and field != self.output_field:
            # e.g. MIPROv2's instruction proposals: FAKE_PROPOSALS in turn. MIPROv2 replaces its first
            # proposal with the starting instruction, so the cycle starts one early.
            hint = FAKE_PROPOSALS[(self._proposals - 1) % len(FAKE_PROPOSALS)]
            self._proposals += 1
            text = (f"Route each request to the cheapest adequate tier (tier 1 is the cheapest, tier "
                    f"{len(self.labels)} the largest). {hint}")
            return _response(_layout(field, text), "fake")
        label = self._answer(messages)
        if label is None:
            return _response("I think this is a medium-hard question.", "fake")
        return _response(_layout(self.output_field, label), "fake", input_tokens=len(messages[-1]["content"]) // 4,
                         output_tokens=12)

    def tier_probs(self, messages: list[dict]) -> list[float]:
        """FAKE distribution: 0.7 on the label ``complete`` would answer, the rest spread evenly."""
        label = self._answer(messages)
        if label not in self.labels:
            raise ValueError(f"FakeRouterEngine: answer {label!r} is not a tier label")
        n = len(self.labels)
        p = [0.3 / (n - 1)] * n
        p[self.labels.index(label)] = 0.7
        return p

    def _answer(self, messages: list[dict]) -> str | None:
        """The label this fake answers for a routing request (None: an unparseable reply)."""
        last = messages[-1]["content"]
        m = re.search(r"\[\[ ## query ## \]\]\n(.*?)(?:\n\nRespond with|\Z)", last, re.S)
        query = m.group(1) if m else last
        self.calls.append(query)
        if self.mode == "fail":
            raise RuntimeError("FakeRouterEngine: simulated backend failure")
        if self.mode == "timeout" or self.delay_s:
            time.sleep(self.delay_s or 5.0)
        if self.mode == "garbage":
            return None
        if self.mode == "out_of_range":
            return str(len(self.labels) + 1)
        if self.mode == "fixed":
            return self.fixed_label or self.labels[0]
        if FAKE_PROPOSALS[0] in messages[0]["content"]:  # follows the "prefer tier 1" instruction
            return self.labels[0]
        if self.mode == "policy" and (tier := fake_policy_tier(messages[0]["content"], query)):
            return self.labels[to_index(tier)]
        tier = self.rule(query, len(self.labels))
        if self.mode == "demos" and 1 < tier < len(self.labels) and (copied := _nearest_demo(messages, query)):
            return copied if copied in self.labels else self.labels[to_index(tier)]
        return self.labels[to_index(tier)]

    def stream(self, request):
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self):
        pass
