"""Policy edits: routing rules a person adds to a program's instruction ("legal advice → tier 3").

Policies live in the instruction itself, as a delimited plain-text section at its end that a
person reads and edits like the rest of ``instruction.txt``::

    Policies (override everything above):
    - If the request is about legal advice, answer 3.
        e.g. Can my employer read my private emails on a work laptop?
        not: Write a Python class that stores contracts in SQLite.
    - If the request is about translation, answer 1.

``apply_policy`` writes exactly these lines (creating the section when it is missing), so an edit
made from code and one typed by hand read the same. A rule with at least one ``e.g.`` line is
*enforced*: :mod:`route_switch.llm.policy_match` decides per query whether it applies (the first
matching line wins) and the router LLM never reads it, so an edit cannot move other queries. A
rule without examples is a *hint* the router LLM reads as prose (as the lines mined by
:mod:`route_switch.optimization.mining` are). See docs/policies.md.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from route_switch.core.errors import InputError
from route_switch.llm.program import RoutingProgram

HEADER = "Policies (override everything above):"
_RULE = "- If the request is about {topic}, answer {tier}."
# "- If the request is about X, answer N." and the shorthand "X → tier N" / "X -> tier N"
_IF_FORM = re.compile(r"^\s*-?\s*If the request is about (?P<topic>.+?),\s*answer (?:tier )?(?P<tier>\d+)\.?\s*$", re.I)
_ARROW_FORM = re.compile(r"^\s*-?\s*(?P<topic>.+?)\s*(?:→|->)\s*(?:tier\s*)?(?P<tier>\d+)\.?\s*$", re.I)
# Indented lines under a rule: a query it covers ("e.g. ...") or one it must not cover ("not: ...").
_EXAMPLE = re.compile(r"^\s+(?:e\.g\.|example:)\s*(?P<q>\S.*?)\s*$", re.I)
_COUNTER = re.compile(r"^\s+not:\s*(?P<q>\S.*?)\s*$", re.I)


class PolicyError(InputError):
    """A policy edit is malformed or names a tier the program does not have."""


@dataclass(frozen=True)
class Policy:
    topic: str  # what the request is about, in the editor's words
    tier: int  # 1-based, 1 = cheapest
    examples: tuple[str, ...] = ()  # queries it covers (an enforced policy has at least one)
    counter_examples: tuple[str, ...] = ()  # queries it must not cover

    @property
    def enforced(self) -> bool:
        """Decided by the policy matcher (has examples), not left to the router LLM's reading."""
        return bool(self.examples)

    @classmethod
    def parse(cls, text: str) -> "Policy":
        """``"legal advice → tier 3"`` or ``"If the request is about legal advice, answer 3."``."""
        for pattern in (_IF_FORM, _ARROW_FORM):
            m = pattern.match(text.strip()) if isinstance(text, str) else None
            if m and m.group("topic").strip():
                return cls(m.group("topic").strip(), int(m.group("tier")))
        raise PolicyError(f"cannot read a policy from {text!r}; write 'TOPIC → tier N'", field="policy")

    def render(self) -> str:
        lines = [_RULE.format(topic=self.topic.rstrip(". "), tier=self.tier)]
        lines += [f"    e.g. {_one_line(q)}" for q in self.examples]
        lines += [f"    not: {_one_line(q)}" for q in self.counter_examples]
        return "\n".join(lines)

    def with_examples(self, examples=(), counter_examples=()) -> "Policy":
        """A copy that also carries these queries (blank or repeated ones are dropped)."""
        def merged(old, new, fld):
            out = list(old)
            for q in new:
                if not isinstance(q, str) or not q.strip():
                    raise PolicyError(f"{fld} must be non-empty queries, got {q!r:.60}", field=fld)
                if _one_line(q) not in out:
                    out.append(_one_line(q))
            return tuple(out)
        return Policy(self.topic, self.tier, merged(self.examples, examples, "example"),
                      merged(self.counter_examples, counter_examples, "counter_example"))


def _one_line(query: str) -> str:
    """A query as one line of the section (line breaks would end the example)."""
    return " ".join(query.split())


def split_policies(instruction: str) -> tuple[str, list[Policy]]:
    """(instruction without its policy section, the policies in it). Lines of the section that
    are not rules are kept in the body, so nothing a person wrote is lost."""
    lines = instruction.rstrip().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == HEADER)
    except StopIteration:
        return instruction.rstrip(), []
    rules, rest = [], []
    for line in lines[start + 1:]:
        ex, ce = _EXAMPLE.match(line), _COUNTER.match(line)
        if rules and (ex or ce):  # an indented example belongs to the rule above it
            r = rules[-1]
            rules[-1] = r.with_examples([ex.group("q")] if ex else [], [ce.group("q")] if ce else [])
            continue
        try:
            rules.append(Policy.parse(line))
        except PolicyError:
            if line.strip():
                rest.append(line)
    body = "\n".join(lines[:start] + rest).rstrip()
    return body, rules


def render_instruction(body: str, policies: list[Policy]) -> str:
    """The instruction text with its policy section (none when there are no policies)."""
    if not policies:
        return body.rstrip()
    return body.rstrip() + "\n\n" + HEADER + "\n" + "\n".join(p.render() for p in policies)


def apply_policy(program: RoutingProgram, policy: "Policy | str", example: str | None = None,
                 examples=(), counter_examples=()) -> RoutingProgram:
    """A copy of ``program`` whose instruction also carries ``policy``.

    A policy on the same topic as an existing one replaces it in place (the last edit wins, the
    line keeps its position). ``example``/``examples``: queries the policy covers, and
    ``counter_examples`` queries it must not cover, written as ``e.g.``/``not:`` lines under the
    rule. With at least one example the policy is enforced by the matcher
    (:mod:`route_switch.llm.policy_match`); without, it is a hint the router LLM reads.
    """
    if isinstance(policy, str):
        policy = Policy.parse(policy)
    if example is not None and (not isinstance(example, str) or not example.strip()):
        raise PolicyError("the example must be a non-empty query", field="example")
    policy = policy.with_examples(([example] if example is not None else []) + list(examples), counter_examples)
    if not 1 <= policy.tier <= len(program.tiers):
        raise PolicyError(f"tier {policy.tier} does not exist; the program has tiers 1..{len(program.tiers)}",
                          field="policy")
    body, rules = split_policies(program.instruction)
    same = [i for i, r in enumerate(rules) if r.topic.lower() == policy.topic.lower()]
    if same:
        rules = [policy if i == same[0] else r for i, r in enumerate(rules) if i == same[0] or i not in same]
    else:
        rules = rules + [policy]
    return RoutingProgram(program.name, [dict(t) for t in program.tiers], render_instruction(body, rules),
                          [dict(d) for d in program.demos])


def apply_policies(program: RoutingProgram, policies) -> RoutingProgram:
    """``apply_policy`` for each of ``policies`` in order."""
    for p in policies:
        program = apply_policy(program, p)
    return program


def llm_instruction(instruction: str) -> str:
    """The instruction the router LLM reads: without the enforced policies (the matcher applies
    those), so adding or editing one leaves every other query's prompt exactly as it was."""
    body, rules = split_policies(instruction)
    hints = [r for r in rules if not r.enforced]
    if len(hints) == len(rules):
        return instruction
    return render_instruction(body, hints)


def enforced_policies(instruction: str) -> list[Policy]:
    """The policies of an instruction that the matcher decides, in order (the first match wins)."""
    return [r for r in split_policies(instruction)[1] if r.enforced]
