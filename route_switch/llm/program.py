"""Routing programs: a YAML description of tiers + instruction + demos (run by
:mod:`route_switch.llm.router_llm`).

Tier labels are the strings "1".."N" (tier 1 = cheapest ... tier N = largest); the
tier names and descriptions are shown to the LLM in the output field description,
so an optimiser (MIPROv2) that rewrites the instruction cannot lose them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from route_switch.core.errors import InputError
from route_switch.core.tiers import to_tier


class ProgramError(InputError):
    """A routing program file is malformed (message names the file and field)."""


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
        from route_switch.core.files import read_yaml

        return cls.from_dict(read_yaml(path, ProgramError), source=str(path))

    def to_dict(self) -> dict:
        return {"name": self.name, "tiers": [dict(t) for t in self.tiers], "instruction": self.instruction,
                "demos": [{"query": d["query"], "tier": int(d["tier"])} for d in self.demos]}

    def to_yaml(self, path) -> None:
        import yaml

        from route_switch.core.files import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100))

    def tier_legend(self) -> str:
        return "; ".join(f"{i} = {t['name']}: {t['description']}" for i, t in enumerate(self.tiers, 1))
