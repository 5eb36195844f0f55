"""One name per knob: the router.yaml field, its command-line flag and its help text, from one table.

The schema (:mod:`route_switch.core.schema.router`) takes its descriptions from :data:`HELP`; the CLI
derives each flag from the field's dotted name with :func:`flag`. Plain data, no pydantic: the CLI
builds its parser without loading the schemas.
"""
from __future__ import annotations

HELP: dict[str, str] = {
    "selection.tau": "tolerance in [0, 1]: the cheapest tier within tau of the best predicted quality "
                     "(0: always the best)",
    "selection.lambda": "instead of tau: maximise predicted quality - lambda * relative cost",
    "bypass.max_tokens": "queries of at most this many tokens go to tier 1 without scoring (0: off)",
    "llm.timeout_s": "seconds before route() falls back to the estimator",
    "llm.max_query_tokens": "the router LLM reads the head and tail of longer queries",
    "llm.fusion_n": "training queries the router LLM routes to fit the fusion (0: configure the LLM without fusion)",
}


def flag(field: str) -> str:
    """The command-line flag of a dotted field: ``llm.timeout_s`` -> ``--llm-timeout-s``; the two
    selection knobs keep their short names (``--tau``, ``--lambda``)."""
    section, key = field.split(".", 1)
    name = key if section == "selection" else f"{section}-{key}"
    return "--" + name.replace("_", "-").replace(".", "-")
