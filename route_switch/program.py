"""Routing programs: a YAML description of tiers + instruction + demos, and the DSPy
module / RouterLLM that run it.

Tier labels are the strings "1".."N" (tier 1 = cheapest ... tier N = largest); the
tier names and descriptions are shown to the LLM in the output field description,
so an optimiser (MIPROv2) that rewrites the instruction cannot lose them.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from route_switch.errors import InputError, RouteSwitchError
from route_switch.tiers import to_tier


class ProgramError(InputError):
    """A routing program file is malformed (message names the file and field)."""


class RouterOutputError(RouteSwitchError, ValueError):
    """The router LLM answered something that is not one of the allowed tier labels."""


class RouterLLMError(RouteSwitchError, RuntimeError):
    """RouterLLM.predict failed: backend error, timeout, or invalid output. Never a guessed tier."""


@dataclass
class RoutingProgram:
    name: str
    tiers: list[dict]  # [{name, description}], cheapest first
    instruction: str
    demos: list[dict] = field(default_factory=list)  # [{query, tier}], tier as int 1..N

    @property
    def labels(self) -> list[str]:
        return [str(to_tier(i)) for i in range(len(self.tiers))]

    @classmethod
    def from_dict(cls, data, source: str = "<dict>") -> "RoutingProgram":
        def bad(fld, msg):
            raise ProgramError(msg, file=source, field=fld)

        if not isinstance(data, dict):
            bad("<root>", "expected a mapping with name, tiers, instruction, demos")
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            bad("name", "must be a non-empty string")
        tiers = data.get("tiers")
        if not isinstance(tiers, list) or not 2 <= len(tiers) <= 9:
            bad("tiers", "must be a list of 2 to 9 {name, description} entries")
        clean_tiers = []
        for i, t in enumerate(tiers):
            if not isinstance(t, dict):
                bad(f"tiers[{i}]", "must be a mapping with name and description")
            for k in ("name", "description"):
                if not isinstance(t.get(k), str) or not t[k].strip():
                    bad(f"tiers[{i}].{k}", "must be a non-empty string")
            clean_tiers.append({"name": t["name"].strip(), "description": t["description"].strip()})
        instruction = data.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            bad("instruction", "must be a non-empty string")
        demos = data.get("demos") or []
        if not isinstance(demos, list):
            bad("demos", "must be a list of {query, tier}")
        names = {t["name"]: to_tier(i) for i, t in enumerate(clean_tiers)}
        clean_demos = []
        for i, d in enumerate(demos):
            if not isinstance(d, dict):
                bad(f"demos[{i}]", "must be a mapping with query and tier")
            if not isinstance(d.get("query"), str) or not d["query"].strip():
                bad(f"demos[{i}].query", "must be a non-empty string")
            tier = d.get("tier")
            if isinstance(tier, str) and tier in names:
                tier = names[tier]
            elif isinstance(tier, str) and tier.strip().isdigit():
                tier = int(tier)
            if isinstance(tier, bool) or not isinstance(tier, int) or not 1 <= tier <= len(clean_tiers):
                bad(f"demos[{i}].tier", f"must be a tier number 1..{len(clean_tiers)} or a tier name")
            clean_demos.append({"query": d["query"], "tier": tier})
        return cls(name.strip(), clean_tiers, instruction.strip(), clean_demos)

    @classmethod
    def from_yaml(cls, path) -> "RoutingProgram":
        from route_switch.paths import read_yaml

        return cls.from_dict(read_yaml(path, ProgramError), source=str(path))

    def to_dict(self) -> dict:
        return {"name": self.name, "tiers": [dict(t) for t in self.tiers], "instruction": self.instruction,
                "demos": [{"query": d["query"], "tier": int(d["tier"])} for d in self.demos]}

    def to_yaml(self, path) -> None:
        import yaml

        from route_switch.paths import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100))

    def tier_legend(self) -> str:
        return "; ".join(f"{i} = {t['name']}: {t['description']}" for i, t in enumerate(self.tiers, 1))


def make_signature(program: RoutingProgram):
    """DSPy Signature ``query -> tier`` with tier a Literal of the program's labels."""
    from typing import Literal

    import dspy

    tier_type = Literal[tuple(program.labels)]
    return dspy.make_signature(
        {"query": (str, dspy.InputField(desc="the user's request to be answered by one of the model tiers")),
         "tier": (tier_type, dspy.OutputField(desc="the cheapest tier that will answer well. " + program.tier_legend()))},
        program.instruction, signature_name="RouteQuery")


def _compact_adapter_cls():
    import dspy

    class CompactChatAdapter(dspy.ChatAdapter):
        """ChatAdapter without the per-call output-format reminder after the query.

        Used with engines that force the layout by grammar, so every token after the
        query is constant and the whole prompt before the query is a cacheable prefix."""

        def user_message_output_requirements(self, signature):
            return None

    return CompactChatAdapter


def build_module(program: RoutingProgram, lm=None):
    """A dspy.Module with one dspy.Predict(query -> tier); forward returns Prediction(tier=label).

    `lm` (optional) is used via dspy.context in forward; without it the configured
    dspy.settings.lm is used (e.g. MIPROv2's task model). A reply that is not an
    allowed label raises (AdapterParseError / RouterOutputError); no tier is guessed.
    """
    import dspy

    labels = tuple(program.labels)

    class _Ref:  # holds the LM without deep-copying it when DSPy copies the module
        def __init__(self, obj):
            self.obj = obj

        def __deepcopy__(self, memo):
            return self

    class RoutingModule(dspy.Module):
        def __init__(self):
            super().__init__()
            self.predict = dspy.Predict(make_signature(program))
            self.predict.demos = [dspy.Example(query=d["query"], tier=str(d["tier"])).with_inputs("query")
                                  for d in program.demos]
            self._lm_ref = _Ref(lm)

        def forward(self, query: str):
            use_lm = self._lm_ref.obj or dspy.settings.lm
            engine = getattr(use_lm, "engine", None)
            compact = getattr(engine, "forces_layout", False)
            adapter = _compact_adapter_cls()() if compact else dspy.ChatAdapter(use_json_adapter_fallback=False)
            scorer = getattr(engine, "tier_probs", None)
            if scorer is not None:  # one call gives the probability of every tier
                messages = adapter.format(self.predict.signature, self.predict.demos, {"query": query})
                probs = normalise_probs(scorer(messages), len(labels))
                pred = dspy.Prediction(tier=labels[probs.index(max(probs))], probs=probs)
                trace = dspy.settings.trace  # as dspy.Predict records its calls (optimisers read them)
                if trace is not None and dspy.settings.max_trace_size > 0:
                    if len(trace) >= dspy.settings.max_trace_size:
                        trace.pop(0)
                    trace.append((self.predict, {"query": query}, pred))
                return pred
            with dspy.context(lm=use_lm, adapter=adapter):
                pred = self.predict(query=query)
            tier = str(getattr(pred, "tier", "")).strip()
            if tier not in labels:
                raise RouterOutputError(f"router answered {tier!r}; allowed: {', '.join(labels)}")
            pred.tier = tier
            pred.probs = [1.0 if lab == tier else 0.0 for lab in labels]  # no distribution: one-hot
            return pred

    return RoutingModule()


def normalise_probs(probs, n: int) -> list[float]:
    """Validate an engine's tier distribution (n finite, non-negative values) and make it sum to 1."""
    import math

    try:
        p = [float(x) for x in probs]
    except (TypeError, ValueError):
        raise RouterOutputError(f"tier distribution is not a list of numbers: {probs!r:.80}") from None
    if len(p) != n or not all(math.isfinite(x) and x >= 0 for x in p) or sum(p) <= 0:
        raise RouterOutputError(f"invalid tier distribution {p!r:.80} for {n} tiers")
    s = sum(p)
    return [x / s for x in p]


def program_from_module(module, base: RoutingProgram) -> RoutingProgram:
    """Read an (optimised) module's instruction and demos back into a RoutingProgram."""
    pred = module.predict
    demos = []
    for d in pred.demos:
        q, t = d.get("query"), str(d.get("tier", "")).strip()
        if isinstance(q, str) and t in base.labels:
            demos.append({"query": q, "tier": int(t)})
    return RoutingProgram(base.name, [dict(t) for t in base.tiers], pred.signature.instructions, demos)


def clip_query(query: str, max_chars: int) -> str:
    """Keep head (3/4) and tail (1/4) of an over-long query."""
    if len(query) <= max_chars:
        return query
    head = max_chars * 3 // 4
    return query[:head] + "\n...\n" + query[-(max_chars - head):]


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


DEFAULT_QUERY_TOKENS = 64  # head + tail of longer queries: the measured best fusion, p99 < 800 ms (README)


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
        from route_switch.policies import enforced_policies, llm_instruction

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
        """The fitted :class:`~route_switch.policy_match.PolicyMatcher` (None without enforced policies)."""
        if not self.enforced:
            return None
        with self._matcher_lock:
            if self._matcher is None:
                from route_switch.policy_match import PolicyMatcher, training_queries

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
            return m.policy.tier - 1, self.program.labels[m.policy.tier - 1]
        v = self.vote(query, timeout_s)
        return v.index, self.program.labels[v.index]
