"""The router LLM: a RoutingProgram run as a DSPy module on an LM, with a per-call deadline.

``RouterLLM.vote(query)`` answers a :class:`TierVote` (a probability per tier); every failure,
timeout or invalid output raises :class:`RouterLLMError`, never a guessed tier.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from route_switch.core.errors import RouteSwitchError
from route_switch.core.template import clip_query
from route_switch.core.tiers import to_index
from route_switch.llm.program import RoutingProgram


class RouterLLMError(RouteSwitchError, RuntimeError):
    """RouterLLM.predict failed: backend error, timeout, or invalid output. Never a guessed tier."""


def build_module(program: RoutingProgram, lm=None):
    """The DSPy module that runs ``program`` (:class:`~route_switch.llm.dspy_modules.RoutingModule`)."""
    from route_switch.llm.dspy_modules import RoutingModule

    return RoutingModule(program, lm)


def program_from_module(module, base: RoutingProgram) -> RoutingProgram:
    """Read an (optimised) module's instruction and demos back into a RoutingProgram."""
    from route_switch.llm.dspy_modules import program_from_module as read_back

    return read_back(module, base)


@dataclass(frozen=True)
class TierVote:
    """The router LLM's answer: a probability per tier (cheapest first) and how it was obtained.

    ``source`` is ``"distribution"`` when the model's label probabilities were read (in-process
    llama.cpp, endpoints with logprobs) and ``"label"`` when only the written label is known
    (one-hot; endpoints without logprobs).
    """
    probs: tuple[float, ...]

    @property
    def index(self) -> int:
        """0-based index of the most likely tier."""
        return max(range(len(self.probs)), key=self.probs.__getitem__)

    @property
    def source(self) -> str:
        return "label" if sorted(self.probs)[-2:] == [0.0, 1.0] else "distribution"


DEFAULT_QUERY_TOKENS = 64  # head + tail of longer queries: the measured best fusion, p99 < 800 ms (docs/results.md)


class RouterLLM:
    """Runs a RoutingProgram on an LLM with a per-call deadline.

    ``vote(query, timeout_s)`` returns a :class:`TierVote`; ``predict`` returns
    ``(tier_index, label)`` of its most likely tier (0-based index, 0 = cheapest).
    Queries longer than ``max_query_tokens`` are cut to their head and tail first.
    Any failure, timeout or invalid output raises RouterLLMError.
    """

    def __init__(self, program: RoutingProgram, lm_cfg: dict | None = None, lm=None,
                 max_query_tokens: int = DEFAULT_QUERY_TOKENS, policy_background=None):
        from route_switch.llm.lm import make_lm
        from route_switch.llm.policies import enforced_policies, llm_instruction

        self.program = program
        self.lm = lm if lm is not None else make_lm(lm_cfg or {"kind": "local"}, labels=program.labels)
        # The LLM reads the instruction without its enforced policies: they are decided by
        # the matcher, and an edit then leaves every other query's prompt as it was.
        seen = RoutingProgram(program.name, program.tiers, llm_instruction(program.instruction), program.demos)
        self.module = build_module(seen, self.lm)
        self.max_query_tokens = max_query_tokens
        self.enforced = enforced_policies(program.instruction)
        self.policy_background = policy_background  # None: the training queries of the shared data
        self._matcher = None
        self._matcher_lock = threading.Lock()

    @property
    def matcher(self):
        """The fitted :class:`~route_switch.llm.policy_match.PolicyMatcher` (None without enforced policies)."""
        if not self.enforced:
            return None
        with self._matcher_lock:
            if self._matcher is None:
                from route_switch.llm.policy_match import PolicyMatcher, training_queries

                bg = self.policy_background if self.policy_background is not None else training_queries()
                self._matcher = PolicyMatcher().fit(self.enforced, bg)
            return self._matcher

    def match(self, query: str):
        """The enforced policy that applies to ``query`` (a PolicyMatch), or None."""
        m = self.matcher
        return m.match(query) if m is not None and isinstance(query, str) and query.strip() else None

    def clip(self, query: str) -> str:
        """The part of ``query`` the router LLM reads (token budget: head and tail)."""
        engine = getattr(self.lm, "engine", None)
        if hasattr(engine, "clip"):
            return engine.clip(query, self.max_query_tokens)
        return clip_query(query, 4 * self.max_query_tokens)

    def _call(self, query: str, deadline: float | None):
        from route_switch.llm.engines import deadline_scope

        with deadline_scope(deadline):
            return self.module(query=self.clip(query))

    def warmup(self) -> None:
        """Fit the policy matcher, load the model and fill the prompt-prefix cache (seconds). Call at startup."""
        _ = self.matcher
        self.vote("hello", timeout_s=None)

    def vote(self, query: str, timeout_s: float | None = None, *, deadline: float | None = None) -> TierVote:
        """The tier distribution for ``query``.

        ``timeout_s``: return (raise) within this many seconds, running the call in a helper thread.
        ``deadline`` (``time.monotonic()`` value): run in this thread and let the engine honour it —
        for callers that enforce their own deadline, like ``Router``.
        """
        if not isinstance(query, str) or not query.strip():
            raise RouterLLMError("query must be a non-empty string")
        if timeout_s is None:
            try:
                pred = self._call(query, deadline)
            except Exception as e:
                raise RouterLLMError(f"router LLM failed: {type(e).__name__}: {e}") from e
        else:
            deadline = time.monotonic() + timeout_s
            box: dict = {}

            def run():
                try:
                    box["pred"] = self._call(query, deadline)
                except BaseException as e:  # reported to the caller below
                    box["err"] = e

            t = threading.Thread(target=run, name="router-llm", daemon=True)
            t.start()
            t.join(timeout_s)
            if t.is_alive():
                raise RouterLLMError(f"router LLM timed out after {timeout_s:.3g}s")
            if "err" in box:
                e = box["err"]
                raise RouterLLMError(f"router LLM failed: {type(e).__name__}: {e}") from e
            pred = box["pred"]
        return TierVote(tuple(pred.probs))

    def predict(self, query: str, timeout_s: float | None = None) -> tuple[int, str]:
        """(tier index, label): the matching enforced policy's tier, else the LLM's most likely tier."""
        m = self.match(query)
        if m is not None:
            k = to_index(m.policy.tier)
            return k, self.program.labels[k]
        v = self.vote(query, timeout_s)
        return v.index, self.program.labels[v.index]
