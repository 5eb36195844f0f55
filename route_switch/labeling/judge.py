"""The judge: a DSPy program rating a tier's answer against the top tier's answer.

Signature ``(query, reference_answer, candidate_answer) -> verdict`` with verdict one of
``equivalent`` / ``acceptable`` / ``worse`` (scores from the shipped ``programs/judge.yaml``: 1.0 / 0.5 / 0.0).
The verdict is constrained where the backend allows it (a GBNF grammar for the in-process model
and, with ``grammar: true``, for llama.cpp servers) and always validated: anything else raises
:class:`JudgeError`, a verdict is never guessed.

Judge LM configs: ``{kind: openai, model, api_base, api_key_env, max_tokens, grammar}`` (calls go
through :class:`~route_switch.labeling.calls.ChatCaller`: cached, retried), ``{kind: local}``
(in-process GGUF, grammar-constrained, cached) or ``{kind: fake}`` (FakeJudgeEngine, tests only).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from route_switch.core.errors import RouteSwitchError
from route_switch.core.paths import find_shipped
from route_switch.core.files import read_yaml
from route_switch.llm.program import ProgramError
from route_switch.core.template import clip_query

DEFAULT_JUDGE = "programs/judge.yaml"  # the user's programs/judge.yaml, else the packaged one
MAX_ANSWER_CHARS = 2000  # longer answers are cut (head + tail) before judging


class JudgeError(RouteSwitchError, RuntimeError):
    """The judge failed or answered something that is not a verdict."""


@dataclass
class JudgeProgram:
    name: str
    instruction: str
    verdicts: dict[str, float]
    demos: list[dict] = field(default_factory=list)

    @classmethod
    def from_yaml(cls, path=DEFAULT_JUDGE) -> "JudgeProgram":
        path = find_shipped(path, "programs")
        p = str(path)
        data = read_yaml(path, ProgramError)
        if not isinstance(data, dict):
            raise ProgramError("must be a mapping with name, verdicts, instruction", file=p)
        if not isinstance(data.get("instruction"), str) or not data["instruction"].strip():
            raise ProgramError("must be a non-empty string", file=p, field="instruction")
        verdicts = data.get("verdicts")
        if (not isinstance(verdicts, dict) or len(verdicts) < 2
                or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in verdicts.values())):
            raise ProgramError("must map at least 2 verdict words to scores in 0..1", file=p, field="verdicts")
        demos = data.get("demos") or []
        keys = ("query", "reference_answer", "candidate_answer", "verdict")
        for i, d in enumerate(demos if isinstance(demos, list) else [None]):
            if not isinstance(d, dict) or not all(isinstance(d.get(k), str) for k in keys):
                raise ProgramError(f"each demo needs string fields {keys}", file=p, field=f"demos[{i}]")
            if d["verdict"] not in verdicts:
                raise ProgramError(f"must be one of {list(verdicts)}", file=p, field=f"demos[{i}].verdict")
        return cls(str(data.get("name", Path(path).stem)), data["instruction"].strip(),
                   {str(k): float(v) for k, v in verdicts.items()}, list(demos))


def _gbnf_literal(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def verdict_grammar(labels) -> str:
    """GBNF for the whole ChatAdapter reply with exactly one verdict."""
    alts = " | ".join(_gbnf_literal(x) for x in labels)
    return f'root ::= {_gbnf_literal("[[ ## verdict ## ]]" + chr(10))} ({alts}) {_gbnf_literal(chr(10) * 2 + "[[ ## completed ## ]]")}\n'


class OpenAIChatEngine:
    """DSPy engine over :class:`ChatCaller` (cached, retried); optional GBNF for llama.cpp servers."""

    forces_layout = False

    def __init__(self, caller, api_base: str, model: str, api_key_env: str | None = None, grammar: str | None = None):
        self.caller, self.api_base, self.model = caller, api_base, model
        self.api_key_env, self.grammar = api_key_env, grammar

    def __deepcopy__(self, memo):
        return self

    def complete(self, request):
        from route_switch.llm.engines import _request_messages, _response

        cfg = request.config
        extra = {"grammar": self.grammar} if self.grammar else None
        r = self.caller.chat(self.api_base, self.model, _request_messages(request), api_key_env=self.api_key_env,
                             max_tokens=cfg.max_tokens or 32, temperature=cfg.temperature or 0.0, extra=extra,
                             who="judge_lm")
        return _response(r.text, self.model, r.in_tokens, r.out_tokens)

    def stream(self, request):
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self):
        pass


def _norm_words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def fake_verdict(reference: str, candidate: str) -> str:
    """FAKE judge rule: identical words -> equivalent, half the words shared -> acceptable, else worse."""
    a, b = _norm_words(reference), _norm_words(candidate)
    if a == b:
        return "equivalent"
    sa, sb = set(a), set(b)
    if sa and sb and len(sa & sb) / len(sa | sb) >= 0.5:
        return "acceptable"
    return "worse"


class FakeJudgeEngine:
    """FAKE judge engine for unit tests: :func:`fake_verdict` on the request's two answers, no model."""

    forces_layout = False

    def __init__(self, mode: str = "rule"):
        self.mode, self.calls = mode, 0

    def __deepcopy__(self, memo):
        return self

    def complete(self, request):
        from route_switch.llm.engines import _layout, _request_messages, _response

        self.calls += 1
        last = _request_messages(request)[-1]["content"]
        if self.mode == "garbage":
            return _response("I would say it is pretty good.", "fake-judge")
        ref = re.search(r"\[\[ ## reference_answer ## \]\]\n(.*?)\n\n\[\[ ## candidate_answer", last, re.S)
        cand = re.search(r"\[\[ ## candidate_answer ## \]\]\n(.*?)(?:\n\nRespond with|\Z)", last, re.S)
        verdict = fake_verdict(ref.group(1) if ref else "", cand.group(1) if cand else "")
        return _response(_layout("verdict", verdict), "fake-judge", len(last) // 4, 4)

    def stream(self, request):
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self):
        pass


def make_judge_lm(cfg: dict, labels, caller=None, cache_dir=None):
    """A dspy.LM for the judge (see module docstring)."""
    import dspy

    from route_switch.llm.lm import LMConfigError

    cfg = dict(cfg or {})
    kind = cfg.get("kind", "openai")
    max_tokens = int(cfg.get("max_tokens", 24))
    if kind == "fake":
        engine = FakeJudgeEngine(cfg.get("mode", "rule"))
    elif kind == "openai":
        if not cfg.get("model") or not cfg.get("api_base"):
            raise LMConfigError("judge lm kind=openai needs 'model' and 'api_base'")
        if caller is None:
            raise LMConfigError("judge lm kind=openai needs a ChatCaller")
        engine = OpenAIChatEngine(caller, str(cfg["api_base"]), str(cfg["model"]), cfg.get("api_key_env"),
                                  verdict_grammar(labels) if cfg.get("grammar") else None)
    elif kind == "local":
        from route_switch.llm.cache import CachedEngine
        from route_switch.llm.engines import LlamaCppEngine
        from route_switch.llm.model_files import ensure_local_model

        path = cfg.get("model_path") or ensure_local_model(cfg.get("cache_dir"))
        engine = LlamaCppEngine(str(path), labels=labels, output_field="verdict", n_ctx=int(cfg.get("n_ctx", 4096)),
                                n_threads=int(cfg.get("n_threads", 2)), reuse_prefix=True)
        if cache_dir:
            engine = CachedEngine(engine, cache_dir, f"judge-local:{Path(path).name}")
    else:
        raise LMConfigError(f"unknown judge lm kind {kind!r}; expected openai, local or fake")
    return dspy.LM(f"local/judge-{kind}", engine=engine, temperature=0.0, max_tokens=max_tokens, cache=False,
                   num_retries=0)


class Judge:
    """``judge(query, reference, candidate) -> (verdict, score)``; thread-safe."""

    def __init__(self, lm_cfg: dict, program: JudgeProgram | str | Path | None = None, caller=None, cache_dir=None):
        import dspy

        self.program = program if isinstance(program, JudgeProgram) else JudgeProgram.from_yaml(program or DEFAULT_JUDGE)
        labels = tuple(self.program.verdicts)
        self.lm = make_judge_lm(lm_cfg, labels, caller=caller, cache_dir=cache_dir)
        self.predict = dspy.Predict(self.signature())
        self.predict.demos = [dspy.Example(**d).with_inputs("query", "reference_answer", "candidate_answer")
                              for d in self.program.demos]
        self.calls = 0

    def signature(self):
        from typing import Literal

        import dspy

        verdict_type = Literal[tuple(self.program.verdicts)]
        return dspy.make_signature(
            {"query": (str, dspy.InputField(desc="the user's request")),
             "reference_answer": (str, dspy.InputField(desc="the answer of the strongest model")),
             "candidate_answer": (str, dspy.InputField(desc="the answer to grade")),
             "verdict": (verdict_type, dspy.OutputField(desc="one of: " + ", ".join(self.program.verdicts)))},
            self.program.instruction, signature_name="JudgeAnswer")

    def judge(self, query: str, reference: str, candidate: str) -> tuple[str, float]:
        import dspy

        self.calls += 1
        try:
            with dspy.context(lm=self.lm, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
                n = MAX_ANSWER_CHARS
                pred = self.predict(query=clip_query(query, n), reference_answer=clip_query(reference, n),
                                    candidate_answer=clip_query(candidate, n))
        except Exception as e:
            raise JudgeError(f"judge failed: {type(e).__name__}: {str(e)[:300]}") from None
        verdict = str(getattr(pred, "verdict", "")).strip()
        if verdict not in self.program.verdicts:
            raise JudgeError(f"judge answered {verdict!r}; allowed: {', '.join(self.program.verdicts)}")
        return verdict, self.program.verdicts[verdict]
