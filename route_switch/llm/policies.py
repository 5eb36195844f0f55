"""Policy edits: routing rules a person adds to a program's instruction ("legal advice → tier 3").

Policies live in the instruction itself, as a delimited plain-text section at its end that a
person reads and edits like the rest of ``instruction.txt``::

    Policies (override everything above):
    - If the request is about legal advice, answer 3.
    - If the request is about translation, answer 1.

``apply_policy`` adds one rule in that exact form (creating the section when it is missing), so
an edit made from code and one typed by hand read the same; with ``example=`` it also adds one
query the policy covers to the demos, with the policy's tier. The embedded 0.5B model follows the
rule alone poorly and the rule plus one example well (``benchmarks/policy_edits.py`` measures
both and other wordings; see docs/policies.md).
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


class PolicyError(InputError):
    """A policy edit is malformed or names a tier the program does not have."""


@dataclass(frozen=True)
class Policy:
    topic: str  # what the request is about, in the editor's words
    tier: int  # 1-based, 1 = cheapest

    @classmethod
    def parse(cls, text: str) -> "Policy":
        """``"legal advice → tier 3"`` or ``"If the request is about legal advice, answer 3."``."""
        for pattern in (_IF_FORM, _ARROW_FORM):
            m = pattern.match(text.strip()) if isinstance(text, str) else None
            if m and m.group("topic").strip():
                return cls(m.group("topic").strip(), int(m.group("tier")))
        raise PolicyError(f"cannot read a policy from {text!r}; write 'TOPIC → tier N'", field="policy")

    def render(self) -> str:
        return _RULE.format(topic=self.topic.rstrip(". "), tier=self.tier)


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


def apply_policy(program: RoutingProgram, policy: "Policy | str", example: str | None = None) -> RoutingProgram:
    """A copy of ``program`` whose instruction also carries ``policy``.

    A policy on the same topic as an existing one replaces it (the last edit wins). ``example``
    (optional): a query the policy covers, added to the demos with the policy's tier; a small
    model follows a rule much more reliably when it has also seen it applied once.
    """
    if isinstance(policy, str):
        policy = Policy.parse(policy)
    if not 1 <= policy.tier <= len(program.tiers):
        raise PolicyError(f"tier {policy.tier} does not exist; the program has tiers 1..{len(program.tiers)}",
                          field="policy")
    body, rules = split_policies(program.instruction)
    rules = [r for r in rules if r.topic.lower() != policy.topic.lower()] + [policy]
    demos = [dict(d) for d in program.demos]
    if example is not None:
        if not isinstance(example, str) or not example.strip():
            raise PolicyError("the example must be a non-empty query", field="example")
        demos = [d for d in demos if d["query"] != example] + [{"query": example, "tier": policy.tier}]
    return RoutingProgram(program.name, [dict(t) for t in program.tiers], render_instruction(body, rules), demos)


def apply_policies(program: RoutingProgram, policies) -> RoutingProgram:
    """``apply_policy`` for each of ``policies`` in order."""
    for p in policies:
        program = apply_policy(program, p)
    return program
