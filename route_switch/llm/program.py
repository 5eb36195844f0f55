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
        """A program from parsed YAML (schema: :class:`~route_switch.core.schema.program.ProgramFile`)."""
        from route_switch.core.schema import validate
        from route_switch.core.schema.program import ProgramFile

        if not isinstance(data, dict):
            raise ProgramError("expected a mapping with name, tiers, instruction, demos", file=source, field="<root>")
        m = validate(ProgramFile, {k: v for k, v in data.items() if not (k == "demos" and v is None)}, source,
                     error=ProgramError)
        tiers = [t.model_dump() for t in m.tiers]
        names = {t["name"]: to_tier(i) for i, t in enumerate(tiers)}
        demos = []
        for i, d in enumerate(m.demos):
            tier = d.tier
            if isinstance(tier, str):
                tier = names.get(tier, int(tier) if tier.strip().isdigit() else None)
            if tier is None or not 1 <= tier <= len(tiers):
                raise ProgramError(f"must be a tier number 1..{len(tiers)} or a tier name", file=source,
                                   field=f"demos[{i}].tier")
            demos.append({"query": d.query, "tier": tier})
        return cls(m.name, tiers, m.instruction, demos)

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
