"""The documentation builds, and the examples it marks with ``<!-- run-in-tests -->`` run as written.

- ``mkdocs build --strict`` over ``docs/`` (``mkdocs.yml``): a broken link or anchor, or a page left
  out of the nav, is a warning, and strict mode fails on it.
- The marked blocks of README.md and ``docs/*.md`` run verbatim in a fresh folder that holds what a
  checkout holds (``programs/``, ``optimized/``, ``evalsets/``, ``examples/``), on the real shared
  data: the ``route()`` example (a Python block), the README's command-line table (one example per
  subcommand) and the integration examples (Python blocks). Each must exit 0, and its output is
  checked against what the page says it does.

The integration examples and ``label`` need a router whose tiers have endpoints
(``estimators/prod``): the test copies the router the ``route()`` example (or ``fit``) fitted and
points its tiers at FAKE OpenAI-compatible upstreams on loopback
(:class:`route_switch.testing.upstreams.FakeUpstream`), each answering its tier's own text.
``URL1`` to ``URL3``, which the LiteLLM example names as "your deployments", are set to them.
``label``'s judge is another such upstream, answering a verdict. The files the ``label`` and
``reoptimize`` lines name as the user's own (``queries.jsonl``, ``judge.yaml``, a route log, and
``weekly-job.yaml``: a copy of ``examples/weekly-job-replay.yaml``, as that file says) are
written first. The LLM commands run with the FAKE router engine (``$ROUTE_SWITCH_LM_CONFIG``
names a ``kind: fake`` config; the weekly job's file names it itself) and a fresh cache. The one
change to a command: ``serve``'s ``--port 8000`` becomes a free port.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from route_switch.core.paths import data_dir

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- run-in-tests -->"
FILE_MARK = re.compile(r"<!-- run-in-tests: ([\w.-]+) -->")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# subcommands of the README's table whose example runs in a test of its own below (the others run
# in test_cli_examples_run)
OWN_TEST = {"optimize": "test_optimize_example_runs", "label": "test_label_example_runs",
            "reoptimize": "test_reoptimize_example_runs"}


# ------------------------------------------------------------------ reading the marked blocks
def marked_blocks(path: Path) -> list[tuple[str, object]]:
    """What follows each marker in ``path``: ``("python"|"bash", code)`` for a fenced block,
    ``("file:<name>", text)`` for a block marked ``<!-- run-in-tests: <name> -->`` (a file the next
    example reads), or ``("table", [row cells, ...])`` for a markdown table (header and rule rows dropped)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    out = []
    for i, line in enumerate(lines):
        mark = FILE_MARK.fullmatch(line.strip())
        if line.strip() != MARK and not mark:
            continue
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if lines[j].startswith("```"):
            lang = f"file:{mark.group(1)}" if mark else lines[j][3:].strip()
            end = next(k for k in range(j + 1, len(lines)) if lines[k].startswith("```"))
            out.append((lang, "\n".join(lines[j + 1:end]) + "\n"))
        elif lines[j].startswith("|"):
            rows = []
            while j < len(lines) and lines[j].startswith("|"):
                rows.append([c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", lines[j].strip())[1:-1]])
                j += 1
            out.append(("table", rows[2:]))
        else:
            raise AssertionError(f"{path.name}:{i + 1}: {MARK} is followed by neither a code block nor a table")
    return out


def python_blocks() -> dict[str, list[str]]:
    """Each distinct marked Python block -> the pages it is on (the same example may be on two)."""
    blocks: dict[str, list[str]] = {}
    for page in PAGES:
        for lang, code in marked_blocks(page):
            if lang == "python":
                blocks.setdefault(code, []).append(page.name)
    return blocks


def cli_table() -> list[list[str]]:
    tables = [b for _, b in (x for x in marked_blocks(ROOT / "README.md") if x[0] == "table")]
    assert len(tables) == 1, "README.md marks one table: the command line"
    return tables[0]


def example_of(cell: str) -> str:
    m = re.fullmatch(r"`(.+)`", cell)
    assert m, f"the example cell is not one code span: {cell!r}"
    return m.group(1)


def table_examples() -> dict[str, str]:
    """Subcommand -> its example command line, from the README's table."""
    return {row[0].strip("`"): example_of(row[-1]) for row in cli_table()}


# ------------------------------------------------------------------ running them
def env_for(workdir: Path, **extra) -> dict:
    return os.environ | {
        "PYTHONPATH": str(ROOT),  # this checkout's package, as the test suite imports it
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # route-switch
        "ROUTE_SWITCH_DATA": str(data_dir().resolve()),
        "MPLBACKEND": "Agg",
    } | extra


def run(cmd: str | list, workdir: Path, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    shell = isinstance(cmd, str)
    return subprocess.run(["bash", "-euo", "pipefail", "-c", cmd] if shell else cmd, cwd=workdir,
                          env=env_for(workdir, **env), capture_output=True, text=True, timeout=timeout)


def run_python(code: str, workdir: Path, name: str, **env) -> subprocess.CompletedProcess:
    script = workdir / f"{name}.py"
    script.write_text(code, encoding="utf-8")
    return run([sys.executable, str(script)], workdir, **env)


def ok(r: subprocess.CompletedProcess, what: str) -> str:
    assert r.returncode == 0, f"{what} exited {r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    return r.stdout


def fresh_checkout(path: Path) -> Path:
    """A fresh folder with what a checkout holds beside the package (read only: linked, not copied),
    and the shared data beside it as ``../shared/data``. ``optimized/`` is a folder of links to the
    committed artifacts, so an artifact a command writes lands here, not in this checkout."""
    path.mkdir()
    for name in ("programs", "evalsets", "examples"):
        if (ROOT / name).exists():
            (path / name).symlink_to(ROOT / name)
    (path / "optimized").mkdir()
    for artifact in (ROOT / "optimized").iterdir():
        (path / "optimized" / artifact.name).symlink_to(artifact)
    (path.parent / "shared").mkdir(exist_ok=True)
    (path.parent / "shared" / "data").symlink_to(data_dir().resolve())
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, shared_data):
    """The folder the Python examples run in."""
    return fresh_checkout(tmp_path_factory.mktemp("docs") / "checkout")


@pytest.fixture(scope="module")
def clidir(tmp_path_factory, shared_data):
    """The folder the command-line examples run in."""
    return fresh_checkout(tmp_path_factory.mktemp("docs-cli") / "checkout")


PROXY_URL = "http://127.0.0.1:4000"  # the LiteLLM proxy of the docs: its client runs against the proxy started here
ROUTE_EXAMPLES = [c for c, pages in python_blocks().items() if "integrations.md" not in pages]
INTEGRATION_EXAMPLES = [c for c, pages in python_blocks().items() if "integrations.md" in pages
                        and PROXY_URL not in c]
PROXY_CLIENTS = [c for c, pages in python_blocks().items() if "integrations.md" in pages and PROXY_URL in c]


@pytest.fixture(scope="module")
def runs(workdir, clidir):
    """Run the route() example and the command-line examples once; the tests below check their outputs.

    The ``route()`` example, ``fit``, ``evaluate`` and ``bench`` each fit an estimator, in two
    folders, and touch none of each other's files, so they run side by side; ``route``, ``show``,
    ``diff`` and ``key-id`` run after them (``route`` reads the folder ``fit`` wrote).
    """
    table = table_examples()
    res: dict[str, subprocess.CompletedProcess] = {}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        first = {f"python:{i}": pool.submit(run_python, code, workdir, f"route_example_{i}")
                 for i, code in enumerate(ROUTE_EXAMPLES)}
        first |= {f"cli:{k}": pool.submit(run, table[k], clidir) for k in ("fit", "evaluate", "bench") if k in table}
        res |= {k: f.result() for k, f in first.items()}
    for k in ("route", "show", "diff", "key-id"):
        if k in table:
            res[f"cli:{k}"] = run(table[k], clidir)
    return table, res


# ------------------------------------------------------------------ the site
def test_mkdocs_builds_strict(tmp_path):
    """Broken links and anchors, and pages missing from the nav, fail the build."""
    pytest.importorskip("mkdocs")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                        "-d", str(tmp_path / "site")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "WARNING" not in r.stderr, r.stderr
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    in_nav = {page for item in nav for page in item.values()}
    assert in_nav == {p.name for p in (ROOT / "docs").glob("*.md")}
    for page in in_nav:
        built = tmp_path / "site" / ("index.html" if page == "index.md" else f"{page[:-3]}/index.html")
        assert built.is_file(), page


def test_readme_links_reach_existing_pages():
    """The README is not part of the site: its links into docs/ are checked here."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#[^)]*)?\)", readme)
    assert len(links) >= 10
    for link in links:
        assert (ROOT / link).is_file(), link


def test_readme_stays_short_and_keeps_the_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    cmd = subprocess.run(["awk", r"/<!-- test-command -->/{f=1;next} f&&/^```/{if(started)exit; started=1; next} f&&started",
                          str(ROOT / "README.md")], capture_output=True, text=True, check=True).stdout
    assert "pytest" in cmd and cmd.count("\n") == 1  # what .ci/run extracts: one command that runs pytest


def test_cli_table_names_every_subcommand():
    from route_switch.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    rows = cli_table()
    assert [r[0].strip("`") for r in rows] == list(dict.fromkeys(r[0].strip("`") for r in rows))  # one line each
    assert {r[0].strip("`") for r in rows} == set(sub.choices)
    for r in rows:
        cmd = example_of(r[-1])
        assert re.search(rf"route-switch {re.escape(r[0].strip('`'))}\b", cmd), cmd


# ------------------------------------------------------------------ the route() example
def test_route_example_runs(runs):
    _, res = runs
    assert ROUTE_EXAMPLES, "README.md marks its route() example"
    for i, _ in enumerate(ROUTE_EXAMPLES):
        out = ok(res[f"python:{i}"], "the route() example").strip().splitlines()
        tier, model, path = out[-2].split()[:3]
        # what the README says: even "What is 17 * 23?" goes to tier 3 (o1-mini) on zeroeval-3tier ...
        assert (tier, model, path) == ("3", "o1-mini-2024-09-12", "estimator"), out
        assert out[-1] == "1"  # ... and tau = 1 always picks the cheapest tier


# ------------------------------------------------------------------ the README's command-line table
def test_cli_examples_run(runs, clidir):
    table, res = runs
    ran = set()
    if "fit" in table:
        assert "wrote estimators/zeroeval-3tier/router.yaml" in ok(res["cli:fit"], table["fit"])
        assert (clidir / "estimators/zeroeval-3tier/estimator.json").is_file()
        ran.add("fit")
    if "route" in table:
        d = json.loads(ok(res["cli:route"], table["route"]).strip().splitlines()[-1])
        assert (d["tier"], d["model"]) == (3, "o1-mini-2024-09-12") and d["path"] == "estimator"
        ran.add("route")
    if "evaluate" in table:
        out = ok(res["cli:evaluate"], table["evaluate"])
        assert re.search(r"^route-switch \(tau=[0-9.]+\)", out, re.M) and "tfidf-lr" in out and "oracle" in out
        assert json.loads((clidir / "runs/zeroeval-3tier/result.json").read_text())
        ran.add("evaluate")
    if "bench" in table:
        b = json.loads(ok(res["cli:bench"], table["bench"]))
        assert b["route_p50_ms"] > 0 and b["routes_per_s"] > 0 and b["import_heavy_modules"] == []
        ran.add("bench")
    if "show" in table:
        out = ok(res["cli:show"], table["show"])
        assert "You route user requests to language models" in out  # the default program's instruction
        ran.add("show")
    if "diff" in table:
        out = ok(res["cli:diff"], table["diff"])
        # the optimised artifact carries mined policy lines the default program does not
        assert "+++ zeroeval-3tier/instruction.txt" in out and re.search(r"^\+- If the request is about .*, answer [123]\.$", out, re.M), out
        ran.add("diff")
    if "key-id" in table:
        out = ok(res["cli:key-id"], table["key-id"]).strip()
        assert re.fullmatch(r"[0-9a-f]{12}", out), out
        ran.add("key-id")
    if "serve" in table:
        check_serve(table["serve"], clidir)
        ran.add("serve")
    if "config-schema" in table:
        ok(run(table["config-schema"], clidir), table["config-schema"])
        ref = (clidir / "docs" / "reference.md").read_text()
        assert ref == (ROOT / "docs" / "reference.md").read_text()  # the committed reference is current
        ran.add("config-schema")
    assert ran | set(OWN_TEST) == set(table), f"examples not run: {set(table) - ran - set(OWN_TEST)}"
    assert all(name in globals() for name in OWN_TEST.values())


def check_serve(cmd: str, workdir: Path) -> None:
    """The serve line, as a real process (on a free port), answers the chat completion of docs/cli.md."""
    import httpx

    from route_switch.server.demo import demo_text
    from route_switch.testing.upstreams import free_port

    assert "--port 8000" in cmd
    port = free_port()
    proc = subprocess.Popen(["bash", "-c", cmd.replace("--port 8000", f"--port {port}")], cwd=workdir,
                            env=env_for(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: bash and the server end together
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not become healthy"
            time.sleep(0.3)
        key = re.search(r"ROUTE_SWITCH_API_KEYS=(\S+)", cmd).group(1)
        r = httpx.post(f"{base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                       json={"model": "router", "messages": [{"role": "user", "content": "What is 17 * 23?"}]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["route_switch"]["tier"] == 3
        assert body["choices"][0]["message"]["content"] == demo_text("o1-mini-2024-09-12")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=30)


def tree_digest(folder: Path) -> str:
    """SHA-256 over every file's path and bytes under ``folder`` (links followed)."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(folder)}\0".encode() + f.read_bytes())
    return h.hexdigest()


def fake_llm_env(tmp_path: Path) -> dict:
    """The FAKE router engine for commands that take no --lm (``$ROUTE_SWITCH_LM_CONFIG``), and a fresh cache."""
    lm = tmp_path / "lm-fake.yaml"
    lm.write_text("kind: fake\n")
    return {"ROUTE_SWITCH_LM_CONFIG": str(lm), "ROUTE_SWITCH_CACHE": str(tmp_path / "cache")}


def test_optimize_example_runs(clidir, tmp_path):
    """The optimize line writes ``optimized/<name>/`` (the files docs/router-llm.md lists) in the
    fresh folder, and leaves the committed artifacts as they are."""
    from route_switch.llm.artifacts import load_artifact

    cmd = table_examples()["optimize"]
    evalset, name = (re.search(rf"--{opt} (\S+)", cmd).group(1) for opt in ("evalset", "name"))
    committed = tree_digest(ROOT / "optimized")
    out = ok(run(cmd, clidir, **fake_llm_env(tmp_path)), cmd)
    assert f"wrote optimized/{name} (instruction: " in out and re.search(r"^gate: ", out, re.M), out
    assert "Average Metric" not in out and "it/s" not in out, out[:500]  # DSPy's own bars stay off stdout
    art = clidir / "optimized" / name
    assert {p.name for p in art.iterdir()} >= {"instruction.txt", "demos.yaml", "tiers.yaml", "metrics.json"}
    metrics = json.loads((art / "metrics.json").read_text())
    assert metrics["evalset"]["name"] == evalset and metrics["lm"].startswith("fake")
    assert load_artifact(art).instruction
    assert tree_digest(ROOT / "optimized") == committed and not (ROOT / "optimized" / name).exists()


JUDGE_VERDICT = "[[ ## verdict ## ]]\nacceptable\n\n[[ ## completed ## ]]"


def test_label_example_runs(runs, clidir, tmp_path):
    """The label line, on the user's files: queries, a router whose tiers are loopback upstreams and a
    judge behind another; every query gets a score and a cost per tier."""
    from route_switch.testing.upstreams import FakeUpstream

    cmd = runs[0]["label"]
    ok(runs[1]["cli:fit"], runs[0]["fit"])  # it wrote estimators/zeroeval-3tier
    queries = ["What is 17 * 23?", "Say hello in French.", "Name a prime number above 10."]
    (clidir / "queries.jsonl").write_text("".join(json.dumps({"query": q}) + "\n" for q in queries))
    with prod_router(clidir), FakeUpstream(text=JUDGE_VERDICT) as judge:
        (clidir / "judge.yaml").write_text(yaml.safe_dump({"kind": "openai", "model": "judge", "api_base": judge.url}))
        out = ok(run(cmd, clidir, ROUTE_SWITCH_CACHE=str(tmp_path / "cache")), cmd)
        assert judge.hits == 2 * len(queries)  # tiers 1 and 2 against the top tier's answer
    assert f"labelled {len(queries)} queries x 3 tiers; wrote labels.jsonl" in out, out
    rows = [json.loads(line) for line in (clidir / "labels.jsonl").read_text().splitlines()]
    tiers = [t["model"] for t in yaml.safe_load((clidir / "estimators/prod/router.yaml").read_text())["tiers"]]
    got = {(r["prompt"], r["model"]): (r["score"], r["cost_usd"]) for r in rows}
    assert set(got) == {(q, m) for q in queries for m in tiers}
    for (q, m), (score, cost) in got.items():
        assert score == (1.0 if m == tiers[-1] else 0.5) and cost > 0, (q, m, score, cost)


def test_reoptimize_example_runs(runs, clidir, tmp_path):
    """The reoptimize line on ``examples/weekly-job-replay.yaml``, copied as its header says, after the
    fitted router logged some traffic: it writes its report and promotes, or keeps with a reason."""
    from route_switch import Router, load_spec

    cmd = runs[0]["reoptimize"]
    ok(runs[1]["cli:fit"], runs[0]["fit"])
    example = (ROOT / "examples" / "weekly-job-replay.yaml").read_text()
    copy, line = re.search(r"^#\s+(cp \S+ weekly-job\.yaml) && (.+)$", example, re.M).groups()
    assert line == cmd  # the example file's own instructions end in the README line
    job = yaml.safe_load(example)
    # the router logs its traffic (route_log in its router.yaml), queries the replay file holds
    cfg_path = clidir / job["router_config"]
    cfg = yaml.safe_load(cfg_path.read_text())
    log = (clidir / job["route_log"]).resolve()
    cfg["route_log"] = {"path": os.path.relpath(log, cfg_path.parent), "privacy": "full"}
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    router = Router.from_config(cfg_path.parent)
    for q in load_spec("zeroeval-3tier").train_test()[1].prompts[:job["sample_size"]]:
        router.route(q)
    router.route_log.close()
    committed = tree_digest(ROOT / "optimized")

    ok(run(copy, clidir), copy)
    out = ok(run(cmd, clidir, ROUTE_SWITCH_CACHE=str(tmp_path / "cache")), cmd)
    m = re.search(r"^status: (promoted|not_promoted); report: (\S+\.md)$", out, re.M)
    assert m, out
    res = json.loads((clidir / m.group(2)).with_suffix(".json").read_text())
    assert res["status"] == m.group(1) and res["labeling"]["labelled_this_run"] == job["sample_size"]
    assert res["labeling"]["failed"] == 0 and res["labeling"]["tier_calls"] == 0  # replayed, no endpoint
    assert f"- verdict: {res['verdict']}" in (clidir / m.group(2)).read_text()
    for part in ("program", "estimator"):  # each part promoted, or kept with its gate's reason
        assert res["promoted"][part] or res[part]["gate"], part
    if res["promoted"]["program"]:
        assert (clidir / "optimized" / job["name"] / "instruction.txt").is_file()
    assert tree_digest(ROOT / "optimized") == committed


# ------------------------------------------------------------------ the integration pages
def dspy_text(tier: int) -> str:
    """A tier's answer, laid out as dspy.ChatAdapter parses it (so the DSPy example can read it too)."""
    return f"[[ ## reasoning ## ]]\nTier {tier} thinks.\n\n[[ ## answer ## ]]\nanswer of tier {tier}\n\n[[ ## completed ## ]]"


@contextlib.contextmanager
def prod_router(folder: Path):
    """``folder/estimators/prod``: the zeroeval-3tier router fitted in ``folder``, its tiers served by
    FAKE upstreams (each answering its tier's own text) while the block runs; yields their URLs."""
    from route_switch.testing.upstreams import FakeUpstream

    with FakeUpstream(text=dspy_text(1)) as a, FakeUpstream(text=dspy_text(2)) as b, FakeUpstream(text=dspy_text(3)) as c:
        dst = folder / "estimators/prod"
        shutil.copytree(folder / "estimators/zeroeval-3tier", dst, ignore=shutil.ignore_patterns(".*"))
        cfg = yaml.safe_load((dst / "router.yaml").read_text())
        for t, u in zip(cfg["tiers"], (a, b, c)):
            t["api_base"] = u.url
        (dst / "router.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        yield {"URL1": a.url, "URL2": b.url, "URL3": c.url}


@pytest.fixture(scope="module")
def prod(runs, workdir):
    ok(runs[1]["python:0"], "the route() example")  # it wrote estimators/zeroeval-3tier
    with prod_router(workdir) as urls:
        yield urls


PRELUDE = "import os\nURL1, URL2, URL3 = (os.environ[k] for k in ('URL1', 'URL2', 'URL3'))  # your deployments\n"


def check_integration(code: str, out: str) -> None:
    """What each integration example prints, as its page says."""
    if "route_switch.OpenAI(" in code:
        lines = out.splitlines()
        at = next(i for i, line in enumerate(lines) if line.strip().isdigit())  # print(...decision.tier)
        tier = int(lines[at])
        assert f"answer of tier {tier}" in "\n".join(lines[:at]), out  # the chosen tier answered
        assert "answer of tier" in "\n".join(lines[at + 1:]), out  # and the stream printed an answer
    elif "RoutedLM(" in code:
        answer, report = out.strip().splitlines()[-2:]
        assert re.fullmatch(r"answer of tier [123]", answer), out
        assert "'calls': 1" in report and "'ChainOfThought'" in report, report
    elif "RouteSwitchStrategy(" in code:
        assert re.search(r"^answer of tier [123]$", out, re.M), out  # a tier's answer, printed
    elif "ConsoleSpanExporter" in code:
        assert '"name": "route_switch.route"' in out and '"route_switch.tier": 3' in out, out
    else:
        raise AssertionError(f"no check for this marked example:\n{code}")


@pytest.mark.parametrize("i", range(len(INTEGRATION_EXAMPLES)))
def test_integration_example_runs(i, prod, workdir):
    code = INTEGRATION_EXAMPLES[i]
    r = run_python(PRELUDE + code, workdir, f"integration_{i}", **prod, OPENAI_API_KEY="none",
                   LITELLM_LOCAL_MODEL_COST_MAP="True")
    check_integration(code, ok(r, code))


def test_integration_pages_mark_their_examples():
    assert len(INTEGRATION_EXAMPLES) == 4  # openai, DSPy, LiteLLM, OpenTelemetry
    assert len(PROXY_CLIENTS) == 1  # the LiteLLM proxy's client


def test_litellm_proxy_example_runs(prod, workdir):
    """The proxy's files are written as the page shows them, its command is the one started here (on a
    free port), and its client example, pointed at that port, gets an answer from the tier the proxy names."""
    import shlex

    from route_switch.testing.litellm_proxy import litellm_proxy, proxy_missing

    if proxy_missing():
        pytest.skip(f"the LiteLLM proxy is not installed (no {', '.join(proxy_missing())}): "
                    "pip install 'route-switch[litellm-proxy]'")
    blocks = marked_blocks(ROOT / "docs/integrations.md")
    for lang, text in blocks:
        if lang.startswith("file:"):
            (workdir / lang[5:]).write_text(text, encoding="utf-8")
    (command,) = [text for lang, text in blocks if lang == "bash"]
    words = shlex.split(command)
    env = dict(w.split("=", 1) for w in words if re.fullmatch(r"[A-Z_]+=\S+", w))
    assert words[len(env):] == ["litellm", "--config", "config.yaml", "--host", "127.0.0.1", "--port", "4000"], command
    with litellm_proxy(workdir / "config.yaml", cwd=workdir, program=[str(Path(sys.executable).parent / "litellm")],
                       env={**env, **prod, "TIER_API_KEY": "none"}) as base:
        r = run_python(PROXY_CLIENTS[0].replace(PROXY_URL, base), workdir, "litellm_proxy_client")
    group, answer = ok(r, PROXY_CLIENTS[0]).strip().split("\n", 1)
    assert group in ("small", "medium", "large"), r.stdout
    assert f"answer of tier {('small', 'medium', 'large').index(group) + 1}" in answer, r.stdout


def test_files_the_docs_name_exist():
    """Every file or folder of this repository that README.md or a page names in backticks exists
    (``route_switch/…``, ``benchmarks/…``, ``tests/…``, ``examples/…``; ``programs/default.yaml`` is a
    name the package resolves to its shipped program, so ``programs/`` is not checked here)."""
    pat = re.compile(r"`((?:route_switch|benchmarks|tests|examples)/[\w./*-]*?)(?:::[\w\[\]*-]+)?`")
    missing = {}
    for page in PAGES:
        for ref in pat.findall(page.read_text(encoding="utf-8")):
            if "<" in ref or "..." in ref:
                continue
            found = list(ROOT.glob(ref)) if "*" in ref else [ROOT / ref] if (ROOT / ref).exists() else []
            if not found:
                missing.setdefault(ref, []).append(page.name)
    assert not missing, f"named in the docs but not in the repository: {missing}"
