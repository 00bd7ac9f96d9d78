"""GNN -> artifacts: TorchScript (deployed switches) and torch.export/AOTInductor (the forward path),
with the Python-side parity check every artifact must pass before it enters a bundle.

Every artifact takes the seven neighbourhood arrays of ``libfraud.models.gnn.INPUT_NAMES`` (float32,
dynamic batch, the model's E and Ft; the fanout of the example inputs baked in for AOTInductor, and
recorded with E and Ft in the package's metadata for the C++ plugin to check) and returns
``(logit [B], embedding [B, D])``. A runner is any callable taking those seven arrays (NumPy or
torch) and returning (logits, embeddings): ``torchscript_runner``, ``aoti_runner``, or the C++
plugin's ``_core.GnnModel(kind, path, embedding_dim).run``.

AOTInductor compiles native code for the build machine's CPU: ``export_aoti`` returns the ISA
flags of that CPU (from /proc/cpuinfo) so the bundle can record them and a loader can refuse a
CPU that lacks them.
"""

from __future__ import annotations

import copy
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from libfraud.models.gnn import INPUT_NAMES, TORCHSCRIPT_DEPRECATION, FraudGnn

__all__ = [
    "AotiExport",
    "GnnParityError",
    "MAX_BATCH",
    "aoti_runner",
    "build_isa_flags",
    "check_gnn_parity",
    "export_aoti",
    "export_torchscript",
    "require_gnn_parity",
    "torchscript_runner",
]

#: Largest batch an AOTInductor artifact accepts (the dynamic batch dimension's upper bound).
MAX_BATCH = 4096
# CPU features whose absence makes generated code fault (SIGILL) rather than run slower.
_LEAFSPEC_DEPRECATION = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
_ISA_FLAG = re.compile(r"^(sse\d.*|ssse3|avx.*|fma|f16c|bmi\d|amx.*)$")


class GnnParityError(RuntimeError):
    """A GNN artifact disagrees with PyTorch eager beyond the tolerance."""


@dataclass(frozen=True)
class AotiExport:
    path: Path  # the .pt2 package
    isa_flags: tuple[str, ...]  # the build CPU's SIMD flags (sorted); the target CPU needs them all
    vec_isa: str  # the vector ISA Inductor generated code for, e.g. "avx512"
    fanout: int  # K baked into the artifact
    entity_types: int  # E baked in (the model's)
    txn_features: int  # Ft baked in (the model's)
    max_batch: int
    seconds: float  # export + compile time


def _eval_copy(model: FraudGnn) -> FraudGnn:
    if not isinstance(model, FraudGnn):
        raise TypeError(f"model must be a FraudGnn, got {type(model).__name__}")
    return copy.deepcopy(model).cpu().eval()


def _as_tensors(arrays: Sequence[Any] | Mapping[str, Any]) -> tuple[torch.Tensor, ...]:
    if isinstance(arrays, Mapping):
        missing = [n for n in INPUT_NAMES if n not in arrays]
        if missing:
            raise ValueError(f"neighbourhood arrays lack {missing}; expected keys {list(INPUT_NAMES)}")
        arrays = [arrays[n] for n in INPUT_NAMES]
    if len(arrays) != len(INPUT_NAMES):
        raise ValueError(f"expected {len(INPUT_NAMES)} arrays ({', '.join(INPUT_NAMES)}), got {len(arrays)}")
    return tuple(torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32)) if not isinstance(a, torch.Tensor)
                 else a.detach().to(torch.float32).contiguous() for a in arrays)


def _check_shapes(model: FraudGnn, args: tuple[torch.Tensor, ...]) -> None:
    """Refuse arrays that are not the contract's for the model's E and Ft (and their own B, K)."""
    B = int(args[0].shape[0])
    K = int(args[3].shape[2]) if args[3].dim() == 4 else -1
    for name, a, want in zip(INPUT_NAMES, args, model.input_shapes(B, K).values()):
        if tuple(a.shape) != want:
            raise ValueError(f"{name} has shape {list(a.shape)}, expected {list(want)} for a model of "
                             f"{model.num_entity_types} entity types and {model.txn_features} transaction features")


def build_isa_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, ...]:
    """The SIMD flags (sse*, avx*, fma, f16c, bmi*, amx*) of this machine's first CPU, sorted."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith("flags"):
            return tuple(sorted(f for f in line.split(":", 1)[1].split() if _ISA_FLAG.match(f)))
    return ()


def export_torchscript(model: FraudGnn, path: str | Path) -> Path:
    """Script the model (eval mode, a copy) and save it; returns the path. Any fanout, any batch."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Deprecated upstream, kept on purpose: deployed switches run TorchScript (ARCHITECTURE.md).
        warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATION, category=DeprecationWarning)
        scripted = torch.jit.script(_eval_copy(model))
        torch.jit.save(scripted, str(path))
    return path


def export_aoti(model: FraudGnn, path: str | Path, example_inputs: Sequence[Any] | Mapping[str, Any],
                max_batch: int = MAX_BATCH) -> AotiExport:
    """torch.export with a dynamic batch (1..max_batch), then AOTInductor into a .pt2 package.

    The fanout of ``example_inputs`` is baked in; give at least 2 rows (a batch of 1 would be
    specialised). Takes 15-25 s cold on the project's machines.
    """
    from torch.export import Dim

    path = Path(path)
    if path.suffix != ".pt2":
        raise ValueError(f"an AOTInductor package path must end in .pt2, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    args = _as_tensors(example_inputs)
    model = _eval_copy(model)
    _check_shapes(model, args)
    if args[0].shape[0] < 2:
        raise ValueError("example_inputs need at least 2 rows, or torch.export specialises the batch to 1")
    start = time.perf_counter()
    batch = Dim("batch", min=1, max=max_batch)
    with torch.no_grad(), warnings.catch_warnings():
        # Inductor's import path defines TorchScript classes (torch.utils.mkldnn), which warns.
        warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATION, category=DeprecationWarning)
        # torch 2.13's own compile path deep-copies a graph holding a deprecated LeafSpec.
        warnings.filterwarnings("ignore", message=_LEAFSPEC_DEPRECATION, category=FutureWarning)
        program = torch.export.export(model, args,
                                      dynamic_shapes=tuple({0: batch} for _ in args))
        # The package does not check its inputs' sizes: the C++ plugin checks these instead.
        meta = {"libfraud.fanout": str(int(args[3].shape[2])),
                "libfraud.entity_types": str(int(model.num_entity_types)),
                "libfraud.txn_features": str(int(model.txn_features))}
        out = torch._inductor.aoti_compile_and_package(program, package_path=str(path),
                                                       inductor_configs={"aot_inductor.metadata": meta})
    seconds = time.perf_counter() - start
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    return AotiExport(path=Path(out), isa_flags=build_isa_flags(), vec_isa=str(pick_vec_isa()),
                      fanout=int(args[3].shape[2]), entity_types=int(model.num_entity_types),
                      txn_features=int(model.txn_features), max_batch=max_batch, seconds=seconds)


Runner = Callable[..., Any]


def torchscript_runner(path: str | Path) -> Runner:
    """A runner over ``torch.jit.load(path)``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATION, category=DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    module.eval()

    def run(*arrays: Any) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            logit, emb = module(*_as_tensors(arrays))
        return logit.numpy(), emb.numpy()

    return run


def aoti_runner(path: str | Path) -> Runner:
    """A runner over ``torch._inductor.aoti_load_package(path)``."""
    compiled = torch._inductor.aoti_load_package(str(path))

    def run(*arrays: Any) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            logit, emb = compiled(*_as_tensors(arrays))
        return logit.numpy(), emb.numpy()

    return run


def _with_edge_rows(arrays: tuple[torch.Tensor, ...], seed: int) -> tuple[torch.Tensor, ...]:
    """The rows, plus a cold-start row (every mask 0) and a partly masked copy of every row.

    Masked slots get zero features, as the sampler writes them. Partial masking keeps the
    contract's nesting: a masked entity or transaction also masks everything below it.
    """
    target_x, ent1_x, ent1_mask, txn2_x, txn2_mask, ent3_x, ent3_mask = arrays
    g = torch.Generator().manual_seed(seed)
    # Cold start: the first row's own features, no neighbourhood at all.
    cold = [target_x[:1], torch.zeros_like(ent1_x[:1]), torch.zeros_like(ent1_mask[:1]),
            torch.zeros_like(txn2_x[:1]), torch.zeros_like(txn2_mask[:1]),
            torch.zeros_like(ent3_x[:1]), torch.zeros_like(ent3_mask[:1])]
    m1 = ent1_mask * (torch.rand(ent1_mask.shape, generator=g) < 0.6)
    m2 = txn2_mask * (torch.rand(txn2_mask.shape, generator=g) < 0.6) * m1[:, :, None]
    m3 = ent3_mask * (torch.rand(ent3_mask.shape, generator=g) < 0.6) * m2[..., None]
    partial = [target_x, ent1_x * m1[..., None], m1, txn2_x * m2[..., None], m2,
               ent3_x * m3[..., None], m3]
    return tuple(torch.cat([a, c, p]) for a, c, p in zip(arrays, cold, partial))


def check_gnn_parity(model: FraudGnn, artifact_runner: Runner,
                     arrays: Sequence[Any] | Mapping[str, Any], tolerance: float = 1e-5,
                     seed: int = 0, chunk: int = 1024, relative: bool = False) -> dict[str, Any]:
    """Compare a runner's logits and embeddings with PyTorch eager on the same inputs.

    The rows compared are ``arrays`` plus a cold-start row and a partly masked copy of each row.
    Returns a JSON-ready report: rows, max_abs_diff_logit, max_abs_diff_embedding, worst_row,
    tolerance, passed (both maxima <= tolerance and every output finite). Raises nothing on a
    mismatch; ``require_gnn_parity`` does. ``relative``: the tolerance is scaled by the largest
    |output| of the reference (at least 1), for reduced precision (FP16) whose error grows with it.
    """
    reference = _eval_copy(model)
    tensors = _as_tensors(arrays)
    _check_shapes(reference, tensors)
    inputs = _with_edge_rows(tensors, seed)
    n = int(inputs[0].shape[0])
    ref_l, ref_e, got_l, got_e = [], [], [], []
    with torch.no_grad():
        for lo in range(0, n, chunk):
            part = tuple(a[lo:lo + chunk] for a in inputs)
            rl, re_ = reference(*part)
            gl, ge = artifact_runner(*part)
            ref_l.append(rl.numpy())
            ref_e.append(re_.numpy())
            got_l.append(np.asarray(gl, dtype=np.float32).reshape(-1))
            got_e.append(np.asarray(ge, dtype=np.float32).reshape(rl.shape[0], -1))
    ref_l, ref_e = np.concatenate(ref_l), np.concatenate(ref_e)
    got_l, got_e = np.concatenate(got_l), np.concatenate(got_e)
    if got_e.shape != ref_e.shape:
        raise GnnParityError(f"runner embeddings have shape {got_e.shape}, eager {ref_e.shape}")
    finite = bool(np.isfinite(got_l).all() and np.isfinite(got_e).all() and np.isfinite(ref_l).all())
    dl = np.abs(got_l.astype(np.float64) - ref_l)
    de = np.abs(got_e.astype(np.float64) - ref_e).max(axis=1)
    worst = np.maximum(dl, de)
    if relative:
        scale = max(1.0, float(np.abs(ref_l).max()), float(np.abs(ref_e).max())) if finite else 1.0
        rule = f"max abs diff <= {tolerance:g} x max(1, largest |float32 output| = {scale:.3g})"
        tolerance = tolerance * scale
    report = {
        "reference": "pytorch eager (float32, CPU)",
        "rows": n,
        "rows_cold_start": 1,
        "rows_partly_masked": (n - 1) // 2,
        "max_abs_diff_logit": float(dl.max()) if finite else float("inf"),
        "max_abs_diff_embedding": float(de.max()) if finite else float("inf"),
        "worst_row": int(worst.argmax()),
        "tolerance": float(tolerance),
        **({"tolerance_rule": rule} if relative else {}),
    }
    report["passed"] = bool(finite and report["max_abs_diff_logit"] <= tolerance
                            and report["max_abs_diff_embedding"] <= tolerance)
    return report


def require_gnn_parity(report: dict[str, Any], what: str = "GNN artifact") -> dict[str, Any]:
    """Return the report if it passed, else raise GnnParityError with its figures."""
    if not report["passed"]:
        raise GnnParityError(
            f"{what} disagrees with PyTorch eager: max abs diff logit {report['max_abs_diff_logit']:.3g}, "
            f"embedding {report['max_abs_diff_embedding']:.3g} > tolerance {report['tolerance']:g} "
            f"(worst row {report['worst_row']} of {report['rows']})")
    return report
