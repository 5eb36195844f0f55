"""The route-switch command line: a thin layer over the Python API (every command is a function)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from route_switch.core.errors import ConfigError, RouteSwitchError
from route_switch.core.knobs import knob_arg

DESCRIPTION = ("Route each LLM query to the cheapest model tier that answers it well. "
               "Every command is a thin layer over a Python function of the route_switch package.")
EPILOG = ("first steps: route-switch fit --evalset zeroeval-3tier; "
          "route-switch route --router estimators/zeroeval-3tier \"Translate 'good morning' into French.\"; "
          "ROUTE_SWITCH_API_KEYS=secret route-switch serve --router estimators/zeroeval-3tier --demo. "
          "Run route-switch COMMAND --help for a command's options.")


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, unless it is unset or the text already names it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or "default" in text or action.default in (None, False)
                or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one usage line and one error line, not the whole synopsis."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        positionals = [a.metavar or a.dest for a in self._actions if not a.option_strings]
        usage = " ".join([self.prog, *map(str, positionals), "[options]"])
        self.exit(2, f"usage: {usage}  (see {self.prog} --help)\n{self.prog}: error: {message}\n")


def _load_split(args):
    """Train/test evalsets from ``--evalset NAME`` or ``--data FILE [--models ...]``."""
    from route_switch.core.evalset import load_evalset
    from route_switch.core.spec import load_spec

    if args.data:
        models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
        ev = load_evalset(args.data, models=models)
        ev.meta["spec"] = Path(args.data).stem
        name, tiers = Path(args.data).stem, None
        if getattr(args, "split_column", False):
            return name, tiers, ev.by_source_split("train"), ev.by_source_split("test")
        train, test = ev.split(0.3 if args.test_size is None else args.test_size, args.seed or 0)
        return name, tiers, train, test
    spec = load_spec(args.evalset)
    if args.test_size is not None:
        spec.test_size = args.test_size
    if args.seed is not None:
        spec.seed = args.seed
    train, test = spec.train_test()
    return spec.name, spec.tiers or None, train, test


def _add_data_args(p):
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--evalset", help="evalset spec name in evalsets/ (or a path to a spec YAML)")
    g.add_argument("--data", help="an evalset file (long or RouterBench wide; parquet/CSV/JSONL)")
    p.add_argument("--models", help="comma-separated models to use with --data (default: those covering every query)")
    p.add_argument("--test-size", type=float, default=None, help="test share (default 0.3 or the spec's)")
    p.add_argument("--seed", type=int, default=None, help="split seed (default 0 or the spec's)")
    p.add_argument("--split-column", action="store_true", help="with --data: use the file's own train/test column")


def _estimator_params(args) -> dict:
    return {"encoder": args.encoder} if getattr(args, "encoder", None) else {}


def _share(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"must be a number strictly between 0 and 1, got {text!r}")
    return v


def _seeds(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes comma-separated integers, got {text!r}") from None


def _int_list(text: str, flag: str) -> list[int]:
    """``"8,16"`` -> [8, 16]; anything else is a one-line usage error."""
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        vals = []
    if not vals or min(vals) < 0:
        raise ConfigError(f"{flag} takes comma-separated whole numbers >= 0, got {text!r}")
    return vals


def _lengths(text: str) -> list[int]:
    """An argparse type: ``"300,2000"`` -> [300, 2000] (whole numbers >= 1)."""
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        vals = []
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"takes comma-separated whole numbers >= 1, got {text!r}")
    return vals


def _number(kind=float, lo: float = 0.0, strict: bool = False, hi: float | None = None):
    """An argparse type: a finite number >= lo (> lo when ``strict``) and <= hi."""
    import math

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: {text!r}") from None
        if not math.isfinite(v) or v < lo or (strict and v == lo):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>' if strict else '>='} {lo:g}, got {text}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"must be at most {hi:g}, got {text}")
        return v
    return parse


def cmd_evaluate(args) -> int:
    from route_switch.core.evaluate import evaluate, format_report, write_outputs

    kw = {"target_quality": args.target_quality, "bootstrap": args.bootstrap,
          "estimator_params": _estimator_params(args)}
    # checked before the minutes of fitting, not after
    bypass = _int_list(args.bypass_max_tokens, "--bypass-max-tokens") if args.bypass_max_tokens else None
    if args.routers:
        kw["routers"] = tuple(r.strip() for r in args.routers.split(",") if r.strip())

    def run(seed=None):
        if seed is not None:
            args.seed = seed
        name, _tiers, train, test = _load_split(args)
        res = evaluate(train, test, seed=args.seed or 0, **kw)
        if args.max_quality_loss is not None:
            from route_switch.core.risk import risk_report

            res["risk"] = risk_report(train, test, args.max_quality_loss, 1 - args.confidence,
                                      estimator_params=kw["estimator_params"], seed=args.seed or 0)
        return name, train, test, res

    if args.seeds:
        from route_switch.core.seeds import evaluate_seeds, format_seeds, write_seeds_result

        res = evaluate_seeds(lambda s: run(s)[3], args.seeds)
        path = write_seeds_result(res, args.out or Path("runs") / f"{res['evalset']}-seeds")
        print(json.dumps(res) if args.json else format_seeds(res) + f"\n\nwrote {path}")
        return 0
    name, train, test, res = run()
    if bypass:
        from route_switch.core.evaluate import bypass_report

        res["bypass"] = bypass_report(train, test, bypass, target_quality=args.target_quality)
    if args.program:
        from route_switch.optimization.evaluate_llm import evaluate_llm

        llm = evaluate_llm(train, test, args.program, lm_cfg=_lm_cfg(args), n=args.llm_test_n, fit_n=args.llm_fusion_n,
                           progress=not args.json)
        res["routers"].update(llm["routers"])
        res["llm_eval"] = llm["llm_eval"]
    files = write_outputs(res, args.out or Path("runs") / name)
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if k != "misroutes"} | {"files": files}))
    else:
        print(format_report(res))
        if "risk" in res:
            from route_switch.core.risk import format_risk

            print("\n" + format_risk(res["risk"]))
        print(f"\nwrote {files['result']}, {files['plot']}, {files['misroutes']}")
    return 0


LM_CONFIG_ENV = "ROUTE_SWITCH_LM_CONFIG"


def _lm_cfg(args) -> dict:
    """The router LM config: ``--lm-config FILE``, else ``--lm KIND``, else the file
    ``$ROUTE_SWITCH_LM_CONFIG`` names, else the embedded model."""
    from route_switch.core.files import read_yaml

    path = getattr(args, "lm_config", None)
    if not path and args.lm is None and os.environ.get(LM_CONFIG_ENV):
        path = os.environ[LM_CONFIG_ENV]
        if not Path(path).is_file():
            raise ConfigError(f"${LM_CONFIG_ENV} names a file that does not exist", file=path)
    return read_yaml(path) if path else {"kind": args.lm or "local"}


def cmd_fit(args) -> int:
    from route_switch.routing.fitting import fit

    name, tiers, train, test = _load_split(args)
    data = train if not args.all else _concat(train, test)
    out = args.out or Path("estimators") / name
    llm = None
    if args.program:
        llm = {"program": args.program, "lm": _lm_cfg(args), "timeout_s": args.llm_timeout_s,
               "fusion_n": args.llm_fusion_n}
    cfg = fit(data, out, tiers=tiers, target_quality=args.target_quality, target_cost_share=args.target_cost_share,
              bypass_tokens=args.bypass_max_tokens, llm=llm, estimator_params=_estimator_params(args),
              max_quality_loss=args.max_quality_loss, confidence=args.confidence, seed=args.seed or 0)
    how = (f"anchored tau={cfg.tau} certified for quality loss <= {args.max_quality_loss} with confidence "
           f"{args.confidence}" + ("" if cfg.risk["certified"] else " (no tau passed: always the best model)")
           if cfg.risk else f"calibrated tau={cfg.tau}")
    if cfg.llm and "tau" in cfg.llm:
        how += f"; router LLM fused with the estimator, tau={cfg.llm['tau']}"
    print(f"fitted on {len(data)} queries, {len(cfg.tiers)} tiers, {how}; wrote {out}/router.yaml")
    return 0


def _concat(a, b):
    import numpy as np
    import pandas as pd

    return a._replace(queries=pd.concat([a.queries, b.queries], ignore_index=True),
                      scores=np.vstack([a.scores, b.scores]), costs=np.vstack([a.costs, b.costs]))


def cmd_route(args) -> int:
    from route_switch.routing.controller import Router, route

    router = Router.from_config(args.router) if args.router else None
    queries = args.query if args.query else [sys.stdin.read()]
    for q in queries:
        d = route(q, tau=args.tau, lam=args.lam, router=router)
        print(json.dumps(d.to_dict(), ensure_ascii=False))
    return 0


def cmd_bench(args) -> int:
    from route_switch.bench import bench

    _name, _tiers, train, test = _load_split(args)
    res = bench(train, test, estimator_params=_estimator_params(args), lengths=args.lengths)
    print(json.dumps(res, indent=None if args.json else 2))
    return 0


def cmd_optimize(args) -> int:
    from route_switch.llm.artifacts import instruction_origin, load_program
    from route_switch.optimization.optimize import optimize
    from route_switch.core.spec import load_spec

    spec = load_spec(args.evalset)
    train, test = spec.train_test()
    start_path = args.start or (Path(args.out_root) / args.name if (Path(args.out_root) / args.name).is_dir()
                                else "programs/default.yaml")
    start = load_program(start_path)
    from route_switch.core.files import read_yaml

    lm_cfg = _lm_cfg(args)
    prompt_lm_cfg = read_yaml(args.prompt_lm_config) if args.prompt_lm_config else None
    pool = None
    if args.demo_pool:
        from route_switch.llm.artifacts import load_demo_pool

        pool = load_demo_pool(args.demo_pool, n_tiers=len(start.tiers))
    res = optimize(train, test, start, lam=args.lam, lm_cfg=lm_cfg, name=args.name, out_root=args.out_root,
                   evalset_name=spec.name, n_train=args.n_train, n_val=args.n_val, n_gate=args.n_gate,
                   n_test=args.n_test, num_candidates=args.candidates, num_trials=args.trials, seed=args.seed,
                   demo_pool=pool, data_demos=not args.no_data_demos, mine=not args.no_mine, fused=not args.llm_alone,
                   prompt_lm_cfg=prompt_lm_cfg, start_origin=instruction_origin(start_path),
                   confidence=args.confidence, min_gain=args.min_gain, progress=not args.quiet,
                   optimizer=args.optimizer)
    m = res.metrics
    from route_switch.optimization.significance import describe_gain

    g = m["gate"]
    print(f"started from {start_path}; wrote {res.artifact} (instruction: {m['instruction_origin']}, "
          f"demos: {m['demos']['from']}, {m['minutes']:.1f} min)")
    print("gate: " + (("passed, " if g["passed"] else "not passed, the start program is kept; ") + describe_gain(g)
                      if "mean_gain" in g else g.get("why", "")))
    print(f"lambda {m['lambda']} ({m['lambda_source']}); held-out objective: start {m['start_objective']:.4f} -> "
          f"optimised {m['optimized_objective']:.4f} ({describe_gain(m['held_out_gain'])}; quality "
          f"{m['start_quality']:.3f} -> {m['optimized_quality']:.3f}, cost share {m['start_cost_share']:.3f} -> "
          f"{m['optimized_cost_share']:.3f}, LLM-alone AIQ {m['start_llm_aiq']:.4f} -> {m['optimized_llm_aiq']:.4f}; "
          f"tier-1/top line {m['line_aiq']:.4f})")
    if "optimized_fused_aiq" in m:
        print(f"fused with the estimator (as route() runs it): AIQ {m['start_fused_aiq']:.4f} -> "
              f"{m['optimized_fused_aiq']:.4f}, estimator alone {m['estimator_aiq']:.4f}; "
              f"{describe_gain(m['held_out_fused_gain'])}")
    print(f"LM calls: {res.cache_misses} (cache hits {res.cache_hits})")
    return 0


def cmd_show(args) -> int:
    from route_switch.llm.artifacts import show

    print(show(args.name))
    return 0


def cmd_diff(args) -> int:
    from route_switch.llm.artifacts import diff

    print(diff(args.a, args.b))
    return 0


def cmd_serve(args) -> int:
    from route_switch.server import serve

    serve(args.router, host=args.host, port=args.port, insecure_no_auth=args.insecure_no_auth,
          max_body_bytes=args.max_body_bytes, rate_limit_per_min=args.rate_limit,
          upstream_timeout_s=args.upstream_timeout, log_prompts=args.log_prompts, log_level=args.log_level,
          budgets_path=args.budgets, workers=args.workers, watch_s=args.watch_s, demo=args.demo)
    return 0


def cmd_key_id(args) -> int:
    from route_switch.server.app import KEY_ID_SECRET_ENV, key_hash

    if not os.environ.get(KEY_ID_SECRET_ENV):
        raise ConfigError(f"set ${KEY_ID_SECRET_ENV} (the proxy's secret): without it key ids are random per process")
    for line in sys.stdin:  # keys on stdin, never in argv (shell history, ps)
        if line.strip():
            print(key_hash(line.strip()))
    return 0


def cmd_label(args) -> int:
    from route_switch.routing.config import load_config
    from route_switch.labeling import label
    from route_switch.core.files import read_yaml

    tiers = load_config(args.router).tiers
    judge = read_yaml(args.judge_config) if args.judge_config else {"kind": "local"}
    ev = label(args.queries, tiers, judge_lm_cfg=judge, out_path=args.out, concurrency=args.concurrency,
               timeout_s=args.timeout, retries=args.retries, dry_run=args.dry_run)
    if ev is not None:
        print(f"labelled {len(ev)} queries x {len(ev.models)} tiers; wrote {args.out}")
    return 0


def cmd_reoptimize(args) -> int:
    from route_switch.core.files import JobLockedError
    from route_switch.jobs.reoptimize import reoptimize

    try:
        res = reoptimize(args.job, dry_run=args.dry_run)
    except JobLockedError as e:
        print(f"route-switch: {e}", file=sys.stderr)
        return 75  # EX_TEMPFAIL: another run holds the lock; cron may try again later
    print(f"status: {res['status']}; report: {res.get('report')}")
    return 0


def cmd_config_schema(args) -> int:
    from route_switch.core.schema.reference import markdown

    if args.out:
        from route_switch.core.files import atomic_write_text

        atomic_write_text(args.out, markdown())
        print(f"wrote {args.out}")
    else:
        print(markdown(), end="")
    return 0


ENCODER_HELP = ("encoder: tfidf (default) or minilm-onnx (needs the minilm extra, see docs/estimator.md, "
                "\"Choosing an encoder\")")


def _add_estimator_args(p):
    p.add_argument("--encoder", help=ENCODER_HELP)
    p.add_argument("--max-quality-loss", type=_share,
                   help="risk control: lose at most this much quality (score units) vs the best single model ...")
    p.add_argument("--confidence", type=_share, default=0.9, help="... with this probability (learn-then-test)")


class DeprecatedAlias(argparse._StoreAction):
    """Stores like any option; an old spelling (kept for one release) also prints a one-line warning."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string and option_string != self.option_strings[0]:
            print(f"route-switch: warning: {option_string} is deprecated and will be removed in the next "
                  f"release; use {self.option_strings[0]}", file=sys.stderr)
        super().__call__(parser, namespace, values, option_string)


def _add_knob(p, field: str, *old: str, **kw):
    """The option of a config field (``llm.timeout_s`` -> ``--llm-timeout-s``, help from the same table),
    with its old spellings as deprecated aliases."""
    from route_switch.core.fields import HELP, flag

    kw.setdefault("help", HELP.get(field))
    if old:
        kw["action"] = DeprecatedAlias
    return p.add_argument(flag(field), *old, **kw)


def _add_lm_args(p, lm_help: str = "router LM kind for --program",
                 config_help: str = "YAML router LM config (e.g. kind: openai, model, api_base) instead of --lm"):
    p.add_argument("--lm", choices=["local", "fake"],
                   help=f"{lm_help} (default: local, or the config file ${LM_CONFIG_ENV} names)")
    p.add_argument("--lm-config", help=config_help)


def _add_evaluate(sub):
    e = sub.add_parser("evaluate", help="fit on the train split, report cost/quality on the test split")
    _add_data_args(e)
    e.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    e.add_argument("--out", help="directory for result.json, pareto.png, misroutes.jsonl (default runs/<name>)")
    e.add_argument("--target-quality", type=knob_arg("target_quality"), default=0.95, help="operating point: share of the best model's quality")
    _add_knob(e, "bypass.max_tokens", "--bypass",
              help="comma-separated token thresholds: report what the bypass saves and misroutes")
    e.add_argument("--program", help="also measure the router LLM running this program (programs/*.yaml or "
                                     "optimized/<name>, hand edits included) against the estimator on the same queries")
    e.add_argument("--llm-test-n", "--llm-n", type=int, default=150, action=DeprecatedAlias,
                   help="test queries routed by the router LLM")
    _add_knob(e, "llm.fusion_n", "--llm-fit-n", type=int, default=None,
              help="training queries for fitting the fusion (default: --llm-test-n)")
    _add_lm_args(e)
    e.add_argument("--seeds", type=_seeds, help="comma-separated split seeds: report mean ± spread over the splits")
    e.add_argument("--bootstrap", type=_number(int), default=0,
                   help="N resamples of the test split: 95%% intervals (with --seeds: per split; 0: off)")
    e.add_argument("--routers", help="comma-separated routers to evaluate (default: route-switch and the baselines)")
    _add_estimator_args(e)
    e.set_defaults(func=cmd_evaluate)


def _add_fit(sub):
    f = sub.add_parser("fit", help="fit the estimator, calibrate tau, write a router directory")
    _add_data_args(f)
    f.add_argument("--out", help="output directory (default estimators/<name>)")
    f.add_argument("--all", action="store_true", help="fit on train and test (for deployment)")
    f.add_argument("--target-quality", type=knob_arg("target_quality"), default=0.95,
                   help="calibrate tau for this share of the best single model's validation quality")
    f.add_argument("--target-cost-share", type=knob_arg("target_cost_share"),
                   help="instead: calibrate tau for at most this share of the top model's cost")
    _add_knob(f, "bypass.max_tokens", "--bypass-tokens", type=_number(int), default=0)
    f.add_argument("--program", help="also configure the router LLM with this program and fit its fusion "
                                     "with the estimator (programs/*.yaml or optimized/<name>)")
    _add_knob(f, "llm.fusion_n", "--llm-n", type=int, default=200)
    _add_knob(f, "llm.timeout_s", "--llm-timeout", type=float, default=2.0)
    _add_lm_args(f)
    _add_estimator_args(f)
    f.set_defaults(func=cmd_fit)


def _add_route(sub):
    r = sub.add_parser("route", help="route queries (arguments, or stdin) and print decisions as JSON lines")
    r.add_argument("query", nargs="*", help="queries to route, one decision each (none: read one query from stdin)")
    r.add_argument("--router", help="router directory or YAML (default: $ROUTE_SWITCH_CONFIG or ./route-switch.yaml)")
    _add_knob(r, "selection.tau", type=knob_arg("tau"), dest="tau")
    _add_knob(r, "selection.lambda", type=knob_arg("lambda"), dest="lam")
    r.set_defaults(func=cmd_route)


def _add_bench(sub):
    b = sub.add_parser("bench", help="latency / throughput / import time / RSS of route() as JSON")
    _add_data_args(b)
    b.add_argument("--json", action="store_true", help="compact one-line JSON")
    b.add_argument("--lengths", type=_lengths, help="comma-separated prompt lengths in characters (e.g. 300,2000,20000): "
                                     "latency per length bucket, prompts built from the evalset")
    b.add_argument("--encoder", help=ENCODER_HELP)
    b.set_defaults(func=cmd_bench)


def _add_optimize(sub):
    o = sub.add_parser("optimize", help="MIPROv2-optimise a routing program against quality - lambda*cost")
    o.add_argument("--evalset", required=True, help="evalset spec whose tiers match the program's")
    _add_knob(o, "selection.lambda", dest="lam", type=knob_arg("lambda"), default=None,
              help="cost weight in score - lambda*cost/C (C: top tier's mean cost); default: the break-even "
                   "lambda at which all-tier-1 and all-top score the same")
    o.add_argument("--min-gain", type=float, default=0.0,
                   help="the gate's lower bound of the gain over the start program must exceed this (default 0)")
    o.add_argument("--confidence", type=float, default=0.9, help="the gate's one-sided confidence (paired bootstrap)")
    o.add_argument("--name", default="default", help="artifact name: optimized/<name>/")
    o.add_argument("--start", help="starting program (default: optimized/<name> if present, else programs/default.yaml)")
    o.add_argument("--out-root", default="optimized", help="folder the artifact folder is written into")
    _add_lm_args(o, "router LM kind (or --lm-config)",
                 "YAML file with the router LM config (e.g. kind: openai, model, api_base, api_key_env)")
    o.add_argument("--prompt-lm-config", help="YAML LM config of a stronger model to propose instructions")
    o.add_argument("--demo-pool", help="YAML list of {query, tier} you wrote; MIPROv2 picks demos from it")
    o.add_argument("--n-train", type=int, default=None,
                   help="training queries demos and mined policies come from (default: all not held out)")
    o.add_argument("--n-val", type=int, default=60, help="training queries MIPROv2 validates candidates on")
    o.add_argument("--n-gate", type=int, default=120, help="training queries held out for the gate")
    o.add_argument("--n-test", type=int, default=150, help="test-split queries for the held-out figures")
    o.add_argument("--no-data-demos", action="store_true", help="keep the program's own demos (instruction only)")
    o.add_argument("--no-mine", action="store_true", help="no instruction candidates made of mined policy lines")
    o.add_argument("--llm-alone", action="store_true",
                   help="gate on the LLM alone, not on the LLM fused with an estimator as route() runs it")
    o.add_argument("--candidates", type=int, default=4, help="instruction candidates MIPROv2 proposes")
    o.add_argument("--trials", type=int, default=8, help="MIPROv2 search trials")
    o.add_argument("--seed", type=int, default=0, help="seed of the slices and of MIPROv2's search")
    o.add_argument("--optimizer", default="mipro", choices=["mipro", "gepa"],
                   help="mipro (MIPROv2) or gepa (dspy.GEPA, reflective, instruction only, same budget of routing calls)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    o.set_defaults(func=cmd_optimize)


def _add_programs(sub):
    """key-id, show and diff: small commands over keys and programs."""
    k = sub.add_parser("key-id", help="print the access-log / budget id of each API key read from stdin",
                       description="Read API keys from stdin, one per line (never put keys in argv), and print "
                                   "the id the proxy logs and budgets use for each. Needs the proxy's secret in "
                                   "$ROUTE_SWITCH_KEY_ID_SECRET.")
    k.set_defaults(func=cmd_key_id)
    s = sub.add_parser("show", help="print a program's instruction, demos and metrics")
    s.add_argument("name", help="artifact name under optimized/, a path, or a program name (programs/default.yaml)")
    s.set_defaults(func=cmd_show)
    d = sub.add_parser("diff", help="instruction diff and metric deltas of two programs")
    d.add_argument("a", help="the old program: artifact name under optimized/, a path, or programs/<name>.yaml")
    d.add_argument("b", help="the new program, named the same ways")
    d.set_defaults(func=cmd_diff)


def _add_label(sub):
    lb = sub.add_parser("label", help="answer queries with every tier and judge them -> an evalset")
    lb.add_argument("--queries", required=True, help="JSONL/CSV/parquet with a query or prompt column, or a route log")
    lb.add_argument("--router", required=True, help="router directory or YAML whose tiers have api_base and prices")
    lb.add_argument("--judge-config", help="YAML LM config of the judge (default: the embedded local model)")
    lb.add_argument("--out", required=True, help="evalset to write (long format: .jsonl, .csv or .parquet)")
    lb.add_argument("--concurrency", type=_number(int, 0, strict=True), default=4, help="calls in flight at once")
    lb.add_argument("--timeout", type=_number(float, 0, strict=True), default=60.0,
                    help="seconds before a tier or judge call is given up")
    lb.add_argument("--retries", type=_number(int), default=3, help="retries of a failed call")
    lb.add_argument("--dry-run", action="store_true", help="only print the estimated number of calls and cost")
    lb.set_defaults(func=cmd_label)


def _add_reoptimize(sub):
    ro = sub.add_parser("reoptimize", help="the weekly job: label new traffic, re-optimise, gate, promote, report")
    ro.add_argument("job", help="job YAML (see examples/weekly-job.yaml)")
    ro.add_argument("--dry-run", action="store_true", help="plan and estimate only; change nothing")
    ro.set_defaults(func=cmd_reoptimize)


def _add_serve(sub):
    v = sub.add_parser("serve", help="OpenAI-compatible routing proxy (keys from ROUTE_SWITCH_API_KEYS)")
    v.add_argument("--router", required=True,
                   help="router directory or YAML; at least one tier needs api_base (or pass --demo)")
    v.add_argument("--demo", action="store_true",
                   help="answer every tier from a stand-in upstream on loopback (canned text, no model): "
                        "try the proxy before configuring endpoints")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    v.add_argument("--port", type=_number(int, 0, hi=65535), default=8000, help="TCP port to listen on")
    v.add_argument("--insecure-no-auth", action="store_true", help="allow running without API keys (never in production)")
    v.add_argument("--max-body-bytes", type=_number(int, 0, strict=True), default=1_000_000,
                   help="larger request bodies get HTTP 413")
    v.add_argument("--rate-limit", type=_number(int), default=600, help="requests per minute per API key (0: off)")
    v.add_argument("--upstream-timeout", type=_number(float, 0, strict=True), default=60.0,
                   help="seconds before trying the next tier up")
    v.add_argument("--log-prompts", action="store_true", help="include prompt text in the request log")
    v.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="level of the JSON log lines on stderr")
    v.add_argument("--budgets", help="YAML of spend limits per API key / tag (see route-switch config-schema)")
    v.add_argument("--workers", type=_number(int, 1), default=1, help="uvicorn worker processes (share limits via state.redis_url)")
    v.add_argument("--watch-s", type=_number(float), default=2.0,
                   help="seconds between checks of the router's files for a hot reload (0: only SIGHUP, /admin/reload)")
    v.set_defaults(func=cmd_serve)


def _add_config_schema(sub):
    c = sub.add_parser("config-schema", help="print the configuration reference (every key of every file) as Markdown")
    c.add_argument("--out", help="write it to this file instead of stdout")
    c.set_defaults(func=cmd_config_schema)


SUBCOMMANDS = (_add_evaluate, _add_fit, _add_route, _add_bench, _add_optimize, _add_programs, _add_label,
               _add_reoptimize, _add_serve, _add_config_schema)


def build_parser() -> argparse.ArgumentParser:
    from route_switch import __version__

    p = Parser(prog="route-switch", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for add in SUBCOMMANDS:
        add(sub)
    return p


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (``| head``): stop quietly, as other command-line tools do."""
    try:  # later flushes (at exit too) go nowhere instead of raising again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the signal


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows up here for short outputs
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except RouteSwitchError as e:
        print(f"route-switch: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # read-only folder, disk full, missing file: one line, not a traceback
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"route-switch: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("route-switch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
