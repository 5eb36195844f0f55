"""Integrity: files that lie (corrupted estimator corpus), fits killed at every rename or run twice at
once, data that would be lost silently, and values that would load but route wrongly."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from servers import fitted_router_dir  # noqa: F401

from route_switch.core.paths import packaged_dir
from route_switch.core.errors import ArtifactError, ConfigError, EvalsetError
from route_switch.core.estimator import QualityEstimator, checksum

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "route_switch.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _rewrite(d: Path, change_arrays=None, change_doc=None, reseal: bool = True) -> None:
    """Corrupt an estimator folder; ``reseal`` recomputes the checksum so only the validator can catch it."""
    with np.load(d / "arrays.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    doc = json.loads((d / "estimator.json").read_text())
    if change_arrays:
        change_arrays(arrays)
    if change_doc:
        change_doc(doc)
    np.savez(d / "arrays.npz", **arrays)
    if reseal and isinstance(doc.get("models"), list):
        doc["checksum"] = checksum(arrays, doc["models"])
    (d / "estimator.json").write_text(json.dumps(doc))


def _set(name, fn):
    def change(a):
        a[name] = fn(a[name])
    return change


def _hyper(key, value):
    def change(doc):
        doc["hyperparameters"][key] = value
    return change


def _enc_param(key, value):
    def change(doc):
        doc["encoder"]["params"][key] = value
    return change


CORRUPTIONS = {
    "indices_out_of_range": (_set("bank.indices", lambda x: x + 10**6), None, "bank.indices"),
    "indices_negative": (_set("bank.indices", lambda x: -x - 1), None, "bank.indices"),
    "indptr_not_monotone": (_set("bank.indptr", lambda x: x[::-1].copy()), None, "bank.indptr"),
    "indptr_too_short": (_set("bank.indptr", lambda x: x[:-5]), None, "bank.indptr"),
    "indptr_past_data": (_set("bank.indptr", lambda x: x + 7), None, "bank.indptr"),
    "bank_shape_wrong": (_set("bank.shape", lambda x: np.array([1, 2, 3])), None, "bank.shape"),
    "nan_coef": (_set("coef", lambda x: np.full_like(x, np.nan)), None, "coef"),
    "inf_intercept": (_set("intercept", lambda x: np.full_like(x, np.inf)), None, "intercept"),
    "nan_unit_cost": (_set("unit_cost", lambda x: x * np.nan), None, "unit_cost"),
    "negative_unit_cost": (_set("unit_cost", lambda x: -x), None, "unit_cost"),
    "string_coef": (_set("coef", lambda x: np.array(["a", "b"])), None, "coef"),
    "memory_out_of_range": (_set("memory", lambda x: x + 5), None, "memory"),
    "nan_idf": (_set("encoder.idf", lambda x: x * np.nan), None, "encoder.idf"),
    "missing_array": (lambda a: a.pop("mean"), None, "missing array"),
    "k_is_a_string": (None, _hyper("k", "30"), "hyperparameters.k"),
    "k_is_fractional": (None, _hyper("k", 2.5), "hyperparameters.k"),
    "w_out_of_range": (None, _hyper("w", 5), "hyperparameters.w"),
    "C_is_nan": (None, _hyper("C", float("nan")), "hyperparameters.C"),
    "models_duplicated": (None, lambda d: d.__setitem__("models", [d["models"][0]] * len(d["models"])), "models"),
    "max_chars_is_text": (None, _enc_param("max_chars", "abc"), "encoder.params.max_chars"),
    "max_chars_is_fractional": (None, _enc_param("max_chars", 10.5), "encoder.params.max_chars"),
    "max_chars_negative": (None, _enc_param("max_chars", -1), "encoder.params.max_chars"),
    "min_df_is_bool": (None, _enc_param("min_df", True), "encoder.params.min_df"),
    "min_df_zero": (None, _enc_param("min_df", 0), "encoder.params.min_df"),
    "encoder_param_unknown": (None, _enc_param("ngrams", 3), "encoder.params.ngrams"),
    "encoder_params_not_a_mapping": (None, lambda d: d["encoder"].__setitem__("params", [1]), "encoder.params"),
    "encoder_unknown": (None, lambda d: d["encoder"].__setitem__("name", "bert"), "encoder.name"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupted_estimator_is_refused_naming_the_file(fitted_router_dir, tmp_path, name):
    arrays_fn, doc_fn, what = CORRUPTIONS[name]
    d = _copy(fitted_router_dir, tmp_path / "r")
    _rewrite(d, arrays_fn, doc_fn)
    with pytest.raises(ArtifactError) as e:
        QualityEstimator.load(d)
    msg = str(e.value)
    assert what in msg and ("arrays.npz" in msg or "estimator.json" in msg), msg


@pytest.mark.parametrize("change", ["reorder_models", "tweak_coef", "drop_checksum"])
def test_checksum_catches_changes_after_fit(fitted_router_dir, tmp_path, change):
    d = _copy(fitted_router_dir, tmp_path / "r")
    fn = {"reorder_models": (None, lambda doc: doc.__setitem__("models", doc["models"][::-1])),
          "tweak_coef": (_set("coef", lambda x: x * 1.001), None),
          "drop_checksum": (None, lambda doc: doc.pop("checksum"))}[change]
    _rewrite(d, *fn, reseal=False)
    with pytest.raises(ArtifactError, match="checksum"):
        QualityEstimator.load(d)


def test_corrupt_indices_give_exit_2_not_a_segfault(fitted_router_dir, tmp_path):
    d = _copy(fitted_router_dir, tmp_path / "r")
    _rewrite(d, CORRUPTIONS["indices_out_of_range"][0])
    r = _cli("route", "--router", d, "What is 2+2?")
    assert r.returncode == 2, (r.returncode, r.stderr[-500:])
    assert "arrays.npz" in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------- fit
KILLER = textwrap.dedent("""
    import os, signal, sys
    from route_switch.core import files
    from route_switch.routing import fitting
    sys.path.insert(0, {tests!r})
    from conftest import synthetic_records
    from route_switch.core.evalset import from_records

    kill_at, calls = int(sys.argv[2]), [0]

    def counted(fn):
        def run(*a, **k):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*a, **k)
        return run

    os.rename, os.replace = counted(os.rename), counted(os.replace)
    files.exchange_paths = counted(files.exchange_paths)
    ev = from_records(synthetic_records(seed=int(sys.argv[3])), source="synthetic")
    fitting.fit(ev, sys.argv[1])
    print("renames", calls[0])
""")


def _fit_killed(out: Path, kill_at: int, seed: int):
    return subprocess.run([sys.executable, "-c", KILLER.format(tests=str(ROOT / "tests")), str(out), str(kill_at),
                           str(seed)], capture_output=True, text=True, env=ENV, timeout=300)


def _version(d: Path) -> str:
    from route_switch.routing.controller import Router

    r = Router.from_config(d)
    assert r.route("Prove that the square root of 2 is irrational.").path == "estimator"
    return json.loads((d / "estimator.json").read_text())["checksum"]


def test_fit_killed_at_every_rename_leaves_a_loadable_router(tmp_path):
    out = tmp_path / "router"
    first = _fit_killed(out, 0, 0)  # 0 = never kill: count the renames of a whole fit
    assert first.returncode == 0, first.stderr[-2000:]
    n = int(first.stdout.split()[-1])
    assert n >= 3  # arrays + json + yaml + the folder swap
    old = _version(out)
    new = None
    for k in range(1, n + 1):
        r = _fit_killed(out, k, 1)
        assert r.returncode == -9, (k, r.returncode, r.stderr[-1000:])
        v = _version(out)  # the folder loads after every kill: the old version or the whole new one
        assert v in (old, new) or new is None, k
        if v != old:
            new = v
    ok = _fit_killed(out, 0, 1)  # the lock of a killed fit is stale: the next fit just works
    assert ok.returncode == 0, ok.stderr[-1000:]
    assert _version(out) != old and (tmp_path / ".router.prev" / "estimator.json").exists()
    assert not list(tmp_path.glob(".router.new-*"))


def test_second_fit_into_a_locked_folder_fails_with_one_line(tmp_path):
    from route_switch.core.files import JobLock

    spec = packaged_dir("evalsets") / "dcrouter-3tier.yaml"
    out = tmp_path / "router"
    with JobLock(tmp_path / ".router.lock"):
        r = _cli("fit", "--evalset", spec, "--out", out)
    assert r.returncode == 2 and "another run is in progress" in r.stderr, r.stderr[-800:]
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()


def test_second_of_two_concurrent_fits_fails_at_once_with_exit_2(tmp_path, shared_data):
    """Two real ``route-switch fit`` processes on one folder, the second started 3 s into the first's
    fit (~10 s): one writes the folder, the other exits 2 at once with one line naming the folder, the
    lock and the holder; never both 0 with whichever ended last silently in the folder."""
    import time

    out, lock = tmp_path / "router", tmp_path / ".router.lock"
    env = {**ENV, "ROUTE_SWITCH_DATA": str(shared_data)}
    cmd = [sys.executable, "-m", "route_switch.cli", "fit", "--evalset", "alpacaeval2", "--out", str(out)]
    procs = []
    for delay in (0, 3):  # either may take the lock first on a busy machine: both orders are checked alike
        time.sleep(delay)
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    done = [(p, *p.communicate(timeout=300)) for p in procs]
    assert sorted(p.returncode for p, _, _ in done) == [0, 2], [(p.returncode, err[-300:]) for p, _, err in done]
    (winner, won_out, _), (_, lost_out, lost_err) = sorted(done, key=lambda d: d[0].returncode)
    loser = subprocess.CompletedProcess(cmd, 2, lost_out, lost_err)
    _one_line_exit_2(loser, f"cannot fit into {out}", str(lock), f"pid {winner.pid}", "another run is in progress")
    assert "wrote" in won_out and "wrote" not in lost_out
    _version(out)  # the winner's folder loads and routes
    assert not list(tmp_path.glob(".router.new-*")) and not (tmp_path / ".router.prev").exists()


def test_failed_write_leaves_no_temp_file_and_the_previous_folder(fitted_router_dir, tmp_path, monkeypatch, synthetic):
    from route_switch.routing import fitting

    out = _copy(fitted_router_dir, tmp_path / "r")
    before = _version(out)

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        fitting.fit(synthetic, out)
    monkeypatch.undo()
    assert _version(out) == before
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name or ".new-" in p.name]


# ---------------------------------------------------------------------------------------------- one-line errors
def _one_line_exit_2(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr[-800:])
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr[-800:]
    for n in needles:
        assert n in r.stderr, r.stderr


def test_cli_one_line_errors(fitted_router_dir, tmp_path):
    d = _copy(fitted_router_dir, tmp_path / "r")
    y = (d / "router.yaml").read_text()
    (d / "router.yaml").write_text(y + "bypass: [1, 2]\n")
    _one_line_exit_2(_cli("route", "--router", d, "hi"), "router.yaml", "bypass")
    (d / "router.yaml").write_text(y.replace("tau:", "tau: .nan #"))
    _one_line_exit_2(_cli("route", "--router", d, "hi"), "router.yaml", "tau")
    art = tmp_path / "art"
    _copy(ROOT / "optimized" / "dcrouter-3tier", art)
    (art / "metrics.json").write_text("[1, 2]")
    _one_line_exit_2(_cli("show", art), "metrics.json")
    spec = packaged_dir("evalsets") / "dcrouter-3tier.yaml"
    _one_line_exit_2(_cli("evaluate", "--evalset", spec, "--bypass-max-tokens", "a,b", "--out", tmp_path / "run"), "--bypass-max-tokens")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    _one_line_exit_2(_cli("fit", "--data", _synthetic_file(tmp_path), "--out", blocker / "router"), "a-file")
    for args in (["fit", "--data", "x.csv", "--bypass-max-tokens", "-5"],
                 ["serve", "--router", d, "--max-body-bytes", "-1"], ["serve", "--router", d, "--rate-limit", "-3"],
                 ["serve", "--router", d, "--upstream-timeout", "-1"], ["serve", "--router", d, "--upstream-timeout", "nan"]):
        r = _cli(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args, r.stderr[-500:])


def _synthetic_file(tmp_path: Path) -> Path:
    import pandas as pd
    from conftest import synthetic_records

    f = tmp_path / "syn.csv"
    pd.DataFrame(synthetic_records()).to_csv(f, index=False)
    return f


def test_python_api_refuses_bad_values(synthetic, tmp_path, fitted_router_dir):
    from route_switch.routing.controller import Router
    from route_switch.routing.fitting import fit
    from route_switch.server import create_app

    with pytest.raises(ConfigError, match="bypass_tokens"):
        fit(synthetic, tmp_path / "r", bypass_tokens=-5)
    router = Router.from_config(fitted_router_dir)
    for kw in ({"max_body_bytes": -1}, {"rate_limit_per_min": -1}, {"upstream_timeout_s": float("nan")},
               {"upstream_timeout_s": 0}):
        with pytest.raises(ConfigError):
            create_app(router, api_keys={"k"}, **kw)


# ---------------------------------------------------------------------------------------------- evalsets
@pytest.mark.parametrize("case, row, field", [("null_id", 4, "id"), ("one_id_two_prompts", 8, "prompt"),
                                              ("empty_prompt", 5, "prompt"), ("blank_prompt", 5, "prompt")])
def test_evalset_silent_loss_is_an_error(tmp_path, case, row, field):
    import pandas as pd

    from conftest import synthetic_records
    from route_switch.core.evalset import load_evalset

    df = pd.DataFrame(synthetic_records(n=30)).astype({"id": object})
    if case == "null_id":
        df.loc[3, "id"] = None
    elif case == "one_id_two_prompts":
        df.loc[7, "prompt"] = "a different prompt under the same id"
    else:
        df.loc[4, "prompt"] = "" if case == "empty_prompt" else "   \n"
    f = tmp_path / "ev.jsonl"
    df.to_json(f, orient="records", lines=True)
    with pytest.raises(EvalsetError) as e:
        load_evalset(f)
    assert e.value.row == row and e.value.field == field and str(f) in str(e.value)


# ------------------------------------------------------------------------------- router.yaml values
@pytest.mark.parametrize("key, value", [("price_in", ".nan"), ("price_in", ".inf"), ("price_out", "-.inf"),
                                        ("price_out", ".NaN"), ("price_in", "true")])
def test_non_finite_tier_price_is_refused_naming_the_field(tmp_path, key, value):
    from route_switch.routing.config import load_config

    other = "price_out" if key == "price_in" else "price_in"
    f = tmp_path / "router.yaml"
    f.write_text(f"tiers:\n  - {{name: a, model: m1, {key}: {value}, {other}: 1.0}}\n"
                 "  - {name: b, model: m2, price_in: 2.0, price_out: 2.0}\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert e.value.field == f"tiers[0].{key}" and str(f) in str(e.value) and "finite" in str(e.value)


# ---------------------------------------------------------------------------------- oversized files
def _bomb(d: Path, member: str, n_bytes: int) -> None:
    """Replace ``member`` of arrays.npz by ``n_bytes`` of zeros (a few kB compressed)."""
    import io
    import zipfile

    with np.load(d / "arrays.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[member] = np.zeros(n_bytes // 4, np.float32)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    (d / "arrays.npz").write_bytes(buf.getvalue())
    assert (d / "arrays.npz").stat().st_size < n_bytes // 50
    with zipfile.ZipFile(d / "arrays.npz") as zf:
        assert sum(i.file_size for i in zf.infolist()) > n_bytes


def test_decompression_bomb_is_refused_before_inflating(fitted_router_dir, tmp_path, monkeypatch):
    import time

    import route_switch.core.estimator as estimator

    d = _copy(fitted_router_dir, tmp_path / "r")
    _bomb(d, "memory", 64 * 2**20)
    monkeypatch.setattr(estimator, "MAX_ARRAY_BYTES", 8 * 2**20)  # the bomb: 8x the cap
    t0 = time.perf_counter()
    with pytest.raises(ArtifactError, match="uncompressed, more than") as e:
        QualityEstimator.load(d)
    assert time.perf_counter() - t0 < 1.0 and str(d / "arrays.npz") in str(e.value)


def test_npy_header_declaring_more_than_the_zip_holds_is_refused(fitted_router_dir, tmp_path):
    import zipfile

    d = _copy(fitted_router_dir, tmp_path / "r")
    header = np.lib.format
    with zipfile.ZipFile(d / "arrays.npz", "a") as zf, zf.open("huge.npy", "w") as fh:
        header.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
        fh.write(b"\0" * 64)
    with pytest.raises(ArtifactError, match="declares more data than it holds"):
        QualityEstimator.load(d)


@pytest.mark.parametrize("name", ["estimator.json", "router.yaml", "fusion.json", "arrays.npz"])
def test_artifact_symlinked_to_dev_zero_is_refused_at_once(fitted_router_dir, tmp_path, name):
    import time

    from route_switch.routing.controller import Router
    from route_switch.routing.fusion import TierFusion

    d = _copy(fitted_router_dir, tmp_path / "r")
    (d / name).unlink(missing_ok=True)
    (d / name).symlink_to("/dev/zero")
    t0 = time.perf_counter()
    with pytest.raises((ArtifactError, ConfigError)) as e:
        TierFusion.load(d / name) if name == "fusion.json" else Router.from_config(d)
    assert "not a regular file" in str(e.value) and str(d / name) in str(e.value)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("name", ["estimator.json", "router.yaml", "fusion.json"])
def test_huge_artifact_file_is_refused_naming_it(fitted_router_dir, tmp_path, monkeypatch, name):
    import route_switch.core.files as files
    from route_switch.routing.controller import Router
    from route_switch.routing.fusion import TierFusion

    d = _copy(fitted_router_dir, tmp_path / "r")
    with open(d / name, "ab") as f:
        f.write(b" " * (2 * 2**20))
    monkeypatch.setattr(files, "MAX_TEXT_BYTES", 2**20)
    with pytest.raises((ArtifactError, ConfigError)) as e:
        TierFusion.load(d / name) if name == "fusion.json" else Router.from_config(d)
    assert "more than the 1,048,576 bytes allowed" in str(e.value) and str(d / name) in str(e.value)


def test_encoder_params_are_checked_at_fit_time_too():
    from route_switch.core.encoders import make_encoder

    for params, fld in (({"max_chars": "abc"}, "max_chars"), ({"min_df": 2.5}, "min_df"), ({"nope": 1}, "nope")):
        with pytest.raises(ConfigError) as e:
            make_encoder("tfidf", **params)
        assert e.value.field == f"encoder_params.{fld}"
    assert make_encoder("tfidf", max_chars=0, min_df=1).max_chars == 0
