"""XGBoost booster -> Treelite -> TL2cgen C -> shared library (bundle target ``tl2cgen-c-shared``).

TL2cgen generates the C in a child process: it trusts its input, and a crash there (it segfaulted
on a cyclic tree) must be an error of the compiling process, not its death. The C is compiled here
with the local C compiler, one process per translation unit, at -O1: -O2/-O3 give byte-identical
libraries at 2x the compile time, and the smaller -O1 code runs faster. The library exports only
TL2cgen's entry points (a version script), is linked ``-Bsymbolic`` so its generic names
(``postprocess``, ``quantize``) never bind to a host's, and is meant to be loaded RTLD_LOCAL.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from .tree_structure import check_tree_structure

__all__ = ["CompileResult", "TreeCompileError", "compile_trees", "EXPORTED_SYMBOLS", "compiler_version"]

# What the library may export, per export/BUNDLE.md; the version script keeps those that exist.
EXPORTED_SYMBOLS = (
    "predict",
    "get_num_feature",
    "get_num_target",
    "get_num_class",
    "get_threshold_type",
    "get_leaf_output_type",
)

# Trees per translation unit: small units compile in parallel and keep the compiler's memory low
# (1000 trees of depth 8 in one unit took 999 CPU-s and 3.9 GB at -O3).
_TREES_PER_UNIT = 32
_SUPPORTED_OBJECTIVES = ("binary:logistic",)
_STDERR_TAIL = 4000

# The code-generation child: reads the model file the parent wrote, writes the C and a JSON of the
# tree and feature counts. Self-contained (treelite and tl2cgen only), so it starts fast and needs
# no sys.path of the parent's.
_CODEGEN_CHILD = """
import json, sys
model_path, src, per_unit, facts_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
import tl2cgen, treelite
model = treelite.frontend.load_xgboost_model(model_path, format_choice="ubjson")
n_trees = int(model.num_tree)
tl2cgen.generate_c_code(model, src, params={"parallel_comp": max(1, -(-n_trees // per_unit))})
with open(facts_path, "w") as f:
    json.dump({"n_trees": n_trees, "num_features": int(model.num_feature)}, f)
"""


class TreeCompileError(RuntimeError):
    """TL2cgen's code generation failed or crashed, or the C compiler or linker failed; the message
    says which, with the stderr tail."""


@dataclass(frozen=True)
class CompileResult:
    path: Path  # the shared library written
    num_features: int
    n_trees: int
    translation_units: int  # C files compiled (main.c + the tree units)
    seconds: float  # wall time of code generation, compiling and linking
    compiler: str  # first line of `cc --version`


def _compiler_command() -> list[str]:
    cc = os.environ.get("CC")
    if cc:
        return shlex.split(cc)
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return [found]
    raise TreeCompileError("no C compiler found (set CC, or install cc/gcc/clang)")


def compiler_version() -> str:
    """First line of the C compiler's ``--version``, e.g. ``cc (Debian 12.2.0-14) 12.2.0``."""
    cmd = _compiler_command() + ["--version"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = (proc.stdout or proc.stderr).strip().splitlines()
    return lines[0] if lines else " ".join(cmd)


def _check_booster(booster, source: str | None) -> None:
    import xgboost as xgb

    if not isinstance(booster, xgb.Booster):
        raise TypeError(f"booster must be an xgboost.Booster, got {type(booster).__name__}")
    try:
        best = booster.best_iteration
    except AttributeError:  # no early stopping: every tree is the model
        best = None
    rounds = booster.num_boosted_rounds()
    if best is not None and rounds != best + 1:
        raise ValueError(
            f"booster is not trimmed: it has {rounds} boosting rounds but best_iteration={best}; "
            f"Treelite/TL2cgen would use all {rounds} rounds while predictors honouring "
            f"best_iteration use {best + 1}. Export booster[:best_iteration + 1] instead."
        )
    config = json.loads(booster.save_config())["learner"]
    objective = config["objective"]["name"]
    if objective not in _SUPPORTED_OBJECTIVES:
        raise ValueError(f"objective {objective!r} is not supported; valid: {list(_SUPPORTED_OBJECTIVES)}")
    kind = config["gradient_booster"]["name"]
    if kind != "gbtree":
        raise ValueError(f"booster type {kind!r} is not supported; valid: ['gbtree']")
    check_tree_structure(booster, source)  # before TL2cgen, which trusts what it is given


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "unknown signal"


def _generate_code(booster, work: Path, what: str) -> tuple[Path, int, int]:
    """TL2cgen's C for ``booster`` in ``work``/src, generated in a child process given the model
    as a file; returns (source directory, trees, features). TreeCompileError naming ``what`` (the
    model) if the child fails or dies of a signal."""
    model, src, facts = work / "model.ubj", work / "src", work / "codegen.json"
    booster.save_model(str(model))
    cmd = [sys.executable, "-c", _CODEGEN_CHILD, str(model), str(src), str(_TREES_PER_UNIT), str(facts)]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", check=False)
    tail = (proc.stderr or proc.stdout)[-_STDERR_TAIL:]
    if proc.returncode < 0:
        signum = -proc.returncode
        raise TreeCompileError(f"TL2cgen crashed generating code for {what}: signal {signum} "
                               f"({_signal_name(signum)}); the compiling process is unaffected"
                               + (f"\n{tail}" if tail.strip() else ""))
    if proc.returncode != 0:
        raise TreeCompileError(f"TL2cgen failed generating code for {what} (exit code {proc.returncode}):\n{tail}")
    counts = json.loads(facts.read_text())
    return src, int(counts["n_trees"]), int(counts["num_features"])


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-_STDERR_TAIL:]
        raise TreeCompileError(f"`{shlex.join(cmd)}` failed with exit code {proc.returncode}:\n{tail}")


def _version_script(header: str) -> str:
    present = [name for name in EXPORTED_SYMBOLS if f" {name}(" in header]
    if "predict" not in present:
        raise TreeCompileError("TL2cgen's header.h declares no predict(): unexpected generated code")
    body = "".join(f"    {name};\n" for name in present)
    return "{\n  global:\n" + body + "  local:\n    *;\n};\n"


def compile_trees(
    booster,
    out_so_path: str | os.PathLike,
    *,
    jobs: int = 2,
    opt_level: str = "-O1",
    progress: bool = False,
    source: str | None = None,
) -> CompileResult:
    """Compile a trimmed binary:logistic booster into the shared library ``out_so_path``.

    Raises ValueError for a booster that cannot be exported (untrimmed early stopping, another
    objective, a tree that is not a tree), TreeCompileError when TL2cgen (run in a child process)
    fails or crashes, or the compiler or linker fails. ``source`` names the model in those messages
    (its file, say; default: ``out_so_path``).
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    if opt_level not in ("-O0", "-O1", "-O2", "-O3", "-Os"):
        raise ValueError(f"opt_level {opt_level!r} is not valid; valid: -O0 -O1 -O2 -O3 -Os")
    out = Path(out_so_path)
    _check_booster(booster, source)
    start = time.perf_counter()

    cc = _compiler_command()
    flags = [opt_level, "-fPIC", "-std=gnu99"]

    with tempfile.TemporaryDirectory(prefix="libfraud-trees-") as tmp:
        src, n_trees, num_features = _generate_code(booster, Path(tmp), source or str(out))
        sources = sorted(src.glob("*.c"))
        if not sources:
            raise TreeCompileError(f"TL2cgen generated no C files in {src}")
        script = src / "exports.map"
        script.write_text(_version_script((src / "header.h").read_text()))

        objects = [s.with_suffix(".o") for s in sources]
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(sources), desc="compiling trees", unit="file")
        try:
            with ThreadPoolExecutor(max_workers=jobs) as pool:  # threads wait on cc processes
                futures = [
                    pool.submit(_run, cc + flags + ["-c", s.name, "-o", o.name], src)
                    for s, o in zip(sources, objects)
                ]
                try:
                    for fut in as_completed(futures):
                        fut.result()
                        if bar is not None:
                            bar.update(1)
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
        finally:
            if bar is not None:
                bar.close()

        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        link = cc + [
            "-shared",
            "-Wl,-Bsymbolic",
            f"-Wl,--version-script={script}",
            "-o",
            str(partial.resolve()),
            *[o.name for o in objects],
            "-lm",
        ]
        try:
            _run(link, src)
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)

    return CompileResult(
        path=out,
        num_features=num_features,
        n_trees=n_trees,
        translation_units=len(sources),
        seconds=time.perf_counter() - start,
        compiler=compiler_version(),
    )
