"""Optimised routing programs on disk: ``optimized/<name>/`` as reviewable, diffable text.

::

    optimized/<name>/
      instruction.txt     the routing instruction, plain text: read it, edit it, commit it
      demos.yaml          few-shot demos [{query, tier}] (only examples the project wrote itself)
      tiers.yaml          program name and tiers (cheapest first) with what each is for
      metrics.json        λ and the objective, evalset (name, path relative to the data root,
                          content hash), lm, dspy_version, created, where the instruction came
                          from, the candidates MIPROv2 chose among, held-out figures

``instruction.txt`` and ``demos.yaml`` are authoritative: a hand edit is used as written by
``route``, ``evaluate`` and the next ``optimize``. An artifact is written into a temporary
folder and swapped in with renames, so a failed or killed run leaves the previous one intact.
"""
from __future__ import annotations

import difflib
import json
import os
import shutil
from pathlib import Path

import yaml

from route_switch.core.files import atomic_write_text, read_capped, read_yaml, swap_dir
from route_switch.core.paths import find_shipped
from route_switch.llm.program import ProgramError, RoutingProgram

FILES = ("instruction.txt", "demos.yaml", "tiers.yaml", "metrics.json")


def _read_text(path: Path) -> str:
    data = read_capped(path, ProgramError)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ProgramError("not valid UTF-8 text", file=str(path), line=line) from None


def _yaml(path: Path):
    return read_yaml(path, ProgramError)


def _item_lines(path: Path) -> list[int]:
    """1-based line of each top-level list item (for errors that point into demos.yaml)."""
    try:
        node = yaml.compose(_read_text(path))
        return [n.start_mark.line + 1 for n in node.value] if isinstance(node, yaml.SequenceNode) else []
    except yaml.YAMLError:
        return []


def load_artifact(directory: str | Path) -> RoutingProgram:
    """Read ``optimized/<name>/`` into a RoutingProgram; malformed edits name the file and line."""
    d = Path(directory)
    for f in ("instruction.txt", "tiers.yaml"):
        if not (d / f).exists():
            raise ProgramError("missing from the artifact", file=str(d / f))
    instruction = _read_text(d / "instruction.txt").strip()
    if not instruction:
        raise ProgramError("the instruction is empty", file=str(d / "instruction.txt"), line=1)
    head = _yaml(d / "tiers.yaml")
    if not isinstance(head, dict):
        raise ProgramError("must be a mapping with name and tiers", file=str(d / "tiers.yaml"))
    demos = []
    if (d / "demos.yaml").exists():
        demos = _yaml(d / "demos.yaml") or []
        if not isinstance(demos, list):
            raise ProgramError("must be a list of {query, tier}", file=str(d / "demos.yaml"), line=1)
    try:
        RoutingProgram.from_dict({**head, "instruction": instruction, "demos": []}, source=str(d / "tiers.yaml"))
        return RoutingProgram.from_dict({**head, "instruction": instruction, "demos": demos}, source=str(d / "demos.yaml"))
    except ProgramError as e:
        if e.file and e.file.endswith("demos.yaml") and e.field and e.field.startswith("demos["):
            i = int(e.field[6:e.field.index("]")])
            lines = _item_lines(d / "demos.yaml")
            e = ProgramError(e.message, file=e.file, field=e.field,
                             line=lines[i] if i < len(lines) else None)
        raise e from None


def load_demo_pool(path: str | Path, n_tiers: int) -> list[dict]:
    """A YAML list of ``{query, tier}`` written by people, validated like a program's demos."""
    p = find_shipped(path, "programs")
    if not p.exists():
        raise ProgramError("demo pool not found", file=str(p))
    items = _yaml(p)
    if not isinstance(items, list) or not items:
        raise ProgramError("must be a non-empty list of {query, tier}", file=str(p), line=1)
    tiers = [{"name": f"tier{i}", "description": "-"} for i in range(1, n_tiers + 1)]
    try:
        return RoutingProgram.from_dict({"name": "pool", "tiers": tiers, "instruction": "-", "demos": items},
                                        source=str(p)).demos
    except ProgramError as e:
        i = int(e.field[6:e.field.index("]")]) if e.field and e.field.startswith("demos[") else None
        lines = _item_lines(p)
        raise ProgramError(e.message, file=str(p), field=e.field,
                           line=lines[i] if i is not None and i < len(lines) else None) from None


def load_program(path: str | Path) -> RoutingProgram:
    """A cold-start program YAML or an artifact folder (``optimized/<name>``).

    ``default`` / ``programs/default.yaml`` name the user's ``programs/`` folder first, then the
    programs shipped with the package (:func:`~route_switch.core.paths.find_shipped`)."""
    p = program_path(path)
    if p.is_dir():
        return load_artifact(p)
    if not p.exists():
        raise ProgramError("no such program file or artifact folder", file=str(p))
    return RoutingProgram.from_yaml(p)


def program_path(path: str | Path) -> Path:
    """Where :func:`load_program` reads ``path`` from: the path itself, ``optimized/<path>``, the
    user's ``programs/`` folder, then the package's (the path unchanged if none exists)."""
    p = Path(path)
    if not p.exists() and (Path("optimized") / str(path)).is_dir():
        return Path("optimized") / str(path)
    return find_shipped(p, "programs")


def save_artifact(directory: str | Path, program: RoutingProgram, metrics: dict) -> Path:
    """Write the artifact into a temporary sibling folder, then swap it in (atomic for readers)."""
    d = Path(directory)
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = d.with_name(f".{d.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        atomic_write_text(tmp / "instruction.txt", program.instruction.rstrip() + "\n")
        atomic_write_text(tmp / "demos.yaml", yaml.safe_dump(program.to_dict()["demos"], sort_keys=False,
                                                             allow_unicode=True, width=100))
        atomic_write_text(tmp / "tiers.yaml", yaml.safe_dump({"name": program.name, "tiers": program.tiers},
                                                             sort_keys=False, allow_unicode=True, width=100))
        atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_dir(tmp, d, keep_previous=False)  # reviewers diff the artifact in git: no stray .prev folder
    return d


def read_metrics(directory: str | Path) -> dict:
    f = Path(directory) / "metrics.json"
    if not f.exists():
        return {}
    try:
        data = json.loads(_read_text(f))
    except json.JSONDecodeError as e:
        raise ProgramError(f"invalid JSON: {e.msg}", file=str(f), line=e.lineno) from None
    if not isinstance(data, dict):
        raise ProgramError(f"must be a JSON object, got {type(data).__name__}", file=str(f))
    return data


def artifact_demo_ids(path: str | Path) -> set[str]:
    """Evalset ids of an artifact's demos drawn from its evalset (metrics.json ``demos.ids``); empty otherwise."""
    p = program_path(path)
    demos = read_metrics(p).get("demos") if p.is_dir() else None
    ids = demos.get("ids") if isinstance(demos, dict) else None
    return {str(i) for i in ids} if isinstance(ids, list) else set()


def instruction_sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:16]


def instruction_origin(path: str | Path) -> str:
    """Where a program's instruction came from: start / proposed / data-grounded / hand-edited.

    A cold-start program file is "start". For an artifact, metrics.json records the origin and
    a hash of the instruction it wrote; an instruction.txt that no longer matches was edited by hand.
    """
    p = Path(path)
    if not p.is_dir():
        return "start"
    m = read_metrics(p)
    if not isinstance(m, dict) or not m.get("instruction_sha256"):
        return "hand-edited"
    if instruction_sha256(load_artifact(p).instruction) != m["instruction_sha256"]:
        return "hand-edited"
    return str(m.get("instruction_origin", "proposed"))


def show(directory: str | Path) -> str:
    """Instruction, demos and metrics of an artifact (or of a program file) as text."""
    d = program_path(directory)
    prog = load_program(d)
    metrics = read_metrics(d) if d.is_dir() else {}
    lines = [f"# {d}  ({prog.name}, {len(prog.tiers)} tiers)", "",
             f"## instruction (origin: {instruction_origin(d)})", prog.instruction, "", "## tiers"]
    lines += [f"{i}. {t['name']}: {t['description']}" for i, t in enumerate(prog.tiers, 1)]
    lines += ["", f"## demos ({len(prog.demos)})"] + [f"- tier {x['tier']}: {x['query']}" for x in prog.demos]
    lines += policy_report(prog.instruction)
    mined = metrics.get("mined_policies") or []
    if mined:
        from route_switch.llm.policies import split_policies

        used = {r.render() for r in split_policies(prog.instruction)[1]} & {m["line"] for m in mined}
        lines += ["", f"## policy lines mined from the training split ({len(used)} of {len(mined)} in the instruction)"]
        lines += [f"{'*' if m['line'] in used else ' '} {m['line'].lstrip('- ')}  [support {m['support']}, "
                  f"precision {m['precision']:.2f}, advantage {m.get('advantage', 0):+.3f}]" for m in mined]
    if metrics:
        skip = {"mined_policies", "candidates"}
        lines += ["", "## metrics"] + [f"{k}: {json.dumps(v, ensure_ascii=False)}" for k, v in metrics.items()
                                       if k not in skip]
    return "\n".join(lines)


def policy_report(instruction: str) -> list[str]:
    """Lines for ``show``: each enforced policy's calibration, and warnings about policies whose
    examples match each other (the earlier line then decides)."""
    from route_switch.llm.policies import enforced_policies

    enforced = enforced_policies(instruction)
    if not enforced:
        return []
    lines = ["", f"## enforced policies ({len(enforced)}; the first matching line wins)"]
    try:
        from route_switch.llm.policy_match import PolicyMatcher, overlapping_examples, training_queries

        m = PolicyMatcher().fit(enforced, training_queries())
    except Exception as e:  # show must print the program even when the matcher cannot be built
        return lines + [f"cannot calibrate the policies: {type(e).__name__}: {e}"]
    for i, c in enumerate(m.calibration_, 1):
        lines.append(f"{i}. {c['policy']} → tier {c['tier']}: threshold {c['threshold']}, examples matched "
                     f"{c['examples_matched']}, background queries matched {c['background_matched_pct']}%")
    if m.background_union_pct_ is not None:
        lines.append(f"background queries matched by any policy: {m.background_union_pct_}% "
                     f"(allowance {100 * m.max_background_rate:g}%)")
    if m.gate_:
        lines.append(f"gate (MiniLM skipped unless it opens): {m.gate_['background_passed_pct']}% of background "
                     f"queries open it, keeping {m.gate_['background_matches_kept']} of their matches")
    lines += [f"WARNING: {w}" for w in overlapping_examples(m)]
    return lines


def diff(a: str | Path, b: str | Path) -> str:
    """Unified diff of two programs' instructions and demos, and the deltas of their numeric metrics."""
    pa, pb = load_program(a), load_program(b)
    out = list(difflib.unified_diff(pa.instruction.splitlines(), pb.instruction.splitlines(),
                                    f"{a}/instruction.txt", f"{b}/instruction.txt", lineterm=""))
    da = [f"tier {x['tier']}: {x['query']}" for x in pa.demos]
    db = [f"tier {x['tier']}: {x['query']}" for x in pb.demos]
    out += list(difflib.unified_diff(da, db, f"{a}/demos.yaml", f"{b}/demos.yaml", lineterm=""))
    if not out:
        out = ["(instructions and demos are identical)"]
    a, b = program_path(a), program_path(b)
    ma = read_metrics(a) if a.is_dir() else {}
    mb = read_metrics(b) if b.is_dir() else {}
    deltas = []
    for k in sorted(set(ma) & set(mb)):
        if isinstance(ma[k], (int, float)) and isinstance(mb[k], (int, float)) and not isinstance(ma[k], bool):
            deltas.append(f"{k}: {ma[k]:.4g} -> {mb[k]:.4g} ({mb[k] - ma[k]:+.4g})")
    if deltas:
        out += ["", "metric deltas (b - a):"] + deltas
    return "\n".join(out)
