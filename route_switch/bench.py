"""Speed and memory benchmark of the estimator path of ``route()`` (JSON output).

The router is fitted on the train split and saved; a fresh worker process then loads it (as a
serving process would) and measures single-query latency (warm, cache off), batched
throughput and its own peak RSS, so the figures exclude the evaluation data in memory.
``import_s`` / ``import_route_s`` are median wall times of ``import route_switch`` and of
``from route_switch import route`` in new interpreters; ``import_heavy_modules`` lists any of
torch, litellm, dspy, scikit-learn or pandas that this pulled in (it should be empty).
``by_length`` (``--lengths 300,2000,20000``) repeats the latency and throughput measurement on
prompts of exactly that many characters, built by joining random test prompts (as few-shot and
RAG prompts are built). ``load_average`` records how busy the machine was.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure_import(repeats: int = 5) -> dict:
    """Median time of ``import route_switch`` and of ``from route_switch import route`` in fresh interpreters."""
    code = ("import time,sys; t=time.perf_counter(); import route_switch; a=time.perf_counter()-t; "
            "t=time.perf_counter(); from route_switch import route, Router; b=time.perf_counter()-t; "
            "print(a, a+b, ' '.join(m for m in ('torch','litellm','dspy','sklearn','pandas') if m in sys.modules))")
    plain, full, heavy = [], [], set()
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        plain.append(float(out[0]))
        full.append(float(out[1]))
        heavy.update(out[2:])
    return {"import_s": statistics.median(plain), "import_route_s": statistics.median(full),
            "import_heavy_modules": sorted(heavy)}


def worker(router_dir: str, queries_file: str, n_single: int = 2000, batch: int = 512) -> dict:
    """Load the saved router and time it; runs in its own process."""
    import numpy as np

    from route_switch.routing.controller import Router

    queries = [json.loads(line) for line in Path(queries_file).read_text(encoding="utf-8").splitlines()]
    t = time.perf_counter()
    router = Router.from_config(router_dir)
    router._cache_size = 0  # measure the estimator, not the decision cache
    load_s = time.perf_counter() - t
    for q in queries[:50]:
        router.route(q)
    lat, cpu = [], []
    for i in range(n_single):
        q = queries[i % len(queries)]
        t, c = time.perf_counter(), time.process_time()
        router.route(q)
        lat.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    n_batch, t, c = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t < 3.0:
        for s in range(0, len(queries), batch):
            n_batch += len(router.route_batch(queries[s:s + batch]))
    batch_s, batch_cpu_s = time.perf_counter() - t, time.process_time() - c
    # Wall-clock figures suffer when other processes share the cores; the CPU-time figures are
    # what this process itself spent (what an otherwise idle core would deliver).
    return {"route_p50_ms": float(np.percentile(lat, 50)), "route_p99_ms": float(np.percentile(lat, 99)),
            "route_mean_ms": float(np.mean(lat)), "routes_per_s": n_batch / batch_s,
            "route_cpu_p50_ms": float(np.percentile(cpu, 50)), "routes_per_cpu_s": n_batch / max(batch_cpu_s, 1e-9),
            "load_s": load_s, "rss_mb": peak_rss_mb(), "n_single": n_single}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prompts_of_length(prompts: list[str], length: int, n: int = 300, seed: int = 0) -> list[str]:
    """``n`` prompts of exactly ``length`` characters, each made of random evalset prompts joined
    by blank lines (as few-shot / RAG prompts are), cut to length."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        parts, size = [], 0
        while size < length:
            p = prompts[int(rng.integers(len(prompts)))]
            parts.append(p)
            size += len(p) + 2
        out.append("\n\n".join(parts)[:length])
    return out


def _run_worker(router_dir: Path, queries: list[str], qf: Path) -> dict:
    qf.write_text("".join(json.dumps(p) + "\n" for p in queries), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "route_switch.bench", str(router_dir), str(qf)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark worker failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def bench(train, test, *, estimator_params: dict | None = None, lengths: list[int] | None = None) -> dict:
    """Fit on ``train``, then time routing of ``test`` queries in a fresh process.

    ``lengths``: also time prompts of each length (characters), built from the test prompts;
    reported under ``by_length`` with the latency targets of that bucket.
    """
    from route_switch.routing.fitting import fit

    with tempfile.TemporaryDirectory() as tmp:
        router_dir = Path(tmp) / "router"
        fit(train, router_dir, estimator_params=estimator_params, target_quality=None)
        res = _run_worker(router_dir, test.prompts, Path(tmp) / "queries.jsonl")
        if lengths:
            res["by_length"] = {}
            for n_chars in lengths:
                r = _run_worker(router_dir, prompts_of_length(test.prompts, n_chars), Path(tmp) / f"q{n_chars}.jsonl")
                r.pop("rss_mb", None), r.pop("load_s", None)
                # targets: p50 <= 1 ms and >= 5,000 routes/s up to 2,000 characters; p50 <= 5 ms beyond
                r["target_p50_ms"] = 1.0 if n_chars <= 2000 else 5.0
                r["target_routes_per_s"] = 5000 if n_chars <= 2000 else None
                r["meets_targets"] = r["route_p50_ms"] <= r["target_p50_ms"] and (
                    r["target_routes_per_s"] is None or r["routes_per_s"] >= r["target_routes_per_s"])
                res["by_length"][str(n_chars)] = r
    res.update(measure_import())
    res.update({"n_train": len(train), "n_test": len(test), "models": len(train.models),
                "targets": {"route_p50_ms": 1.0, "route_p99_ms": 5.0, "routes_per_s": 5000, "import_s": 0.5, "rss_mb": 200}})
    res["meets_targets"] = (res["route_p50_ms"] <= 1.0 and res["route_p99_ms"] <= 5.0 and res["routes_per_s"] >= 5000
                            and res["import_route_s"] <= 0.5 and res["rss_mb"] <= 200 and not res["import_heavy_modules"]
                            and all(r["meets_targets"] for r in res.get("by_length", {}).values()))
    res["load_average"] = list(os.getloadavg())  # other jobs on the machine inflate latencies
    return res


if __name__ == "__main__":
    print(json.dumps(worker(sys.argv[1], sys.argv[2])))
