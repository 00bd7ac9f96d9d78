"""DenseGnn -> ONNX (targets ``onnx``, float32, and ``onnx-fp16``), the ONNX Runtime runner used for
parity, and the TensorRT op check. See export/BUNDLE.md, "ONNX artifacts".

- ``export_onnx``: torch.onnx's dynamo exporter, one self-contained file (``external_data=False``),
  dynamic batch, the fanout baked in; inputs ``INPUT_NAMES``, outputs ``logit [B]``,
  ``embedding [B, D]``. Returns an ``OnnxExport`` whose ``manifest()`` is what a bundle records.
- ``convert_fp16``: onnxruntime.transformers.float16 with ``keep_io_types=True``: every input and
  output stays float32 (Cast nodes at the graph's edges), so a caller feeds and reads the same
  arrays as the float32 graph. Only graphs lowered with saturation (FP16's range rule, see
  export/lower.py) are converted: otherwise a large input would become inf/NaN in FP16.
- ``onnx_runner``: a runner for ``export.gnn.check_gnn_parity`` (ONNX Runtime, CPU).
- ``tensorrt_op_problems``: the graph's ops against TensorRT's ONNX parser support list.
- ``fp16_score_effect``: what FP16 GNN outputs do to the AUPRC of the final score.
"""

from __future__ import annotations

import collections
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from libfraud.models.gnn import INPUT_NAMES, TORCHSCRIPT_DEPRECATION, input_shapes

from .lower import FP16_MAX, DenseGnn

__all__ = [
    "FP16_RELATIVE_TOLERANCE",
    "FP16_TOLERANCE",
    "ONNX_OPSET",
    "OUTPUT_NAMES",
    "TENSORRT_ONNX_OPS",
    "TENSORRT_TROUBLE_OPS",
    "OnnxExport",
    "OnnxExportError",
    "convert_fp16",
    "export_onnx",
    "fp16_score_effect",
    "onnx_ops",
    "onnx_runner",
    "tensorrt_op_problems",
]

#: The dynamo exporter's default opset in torch 2.13 (FACTS.md); recorded in the manifest.
ONNX_OPSET = 20
OUTPUT_NAMES = ("logit", "embedding")
#: Max |FP16 graph - float32 PyTorch| on logits and embeddings, ONNX Runtime on CPU. Measured in
#: tests/test_lower_onnx.py on 3 x 256 realistic rows (+ cold-start and partly masked copies), mean
#: and max models with fitted input scaling: worst 1.9e-3 (embeddings; logits 6e-4). The budget
#: is that with ~2.5x margin; a trained model's own figure is checked when it is compiled.
FP16_TOLERANCE = 5e-3
#: For a trained model the error grows with the size of its outputs (FP16 keeps ~3 significant
#: digits): compile checks max abs diff <= FP16_RELATIVE_TOLERANCE x max(1, largest |float32
#: output|). Measured on the demo's trained GNN: 0.035 on outputs of magnitude ~10 (within 1e-2 x 10).
FP16_RELATIVE_TOLERANCE = 1e-2
_LEAFSPEC_DEPRECATION = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
_SHARED_AXIS_NOTE = r"# The axis name: batch will not be used"
_METADATA_SATURATE = "libfraud.saturate"
_METADATA_FANOUT = "libfraud.fanout"

#: Ops TensorRT's ONNX parser imports (onnx-tensorrt, docs/operators.md, "Operator Support
#: Matrix", TensorRT 10.x), restricted to those a dense GNN graph may use. An op outside this set
#: fails tensorrt_op_problems: add one only after checking the matrix and its restrictions.
TENSORRT_ONNX_OPS = frozenset({
    "Abs", "Add", "And", "Cast", "CastLike", "Clip", "Concat", "Constant", "ConstantOfShape", "Div",
    "Einsum", "Equal", "Erf", "Exp", "Expand", "Flatten", "Gemm", "Greater", "GreaterOrEqual",
    "Identity", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log", "MatMul", "Max",
    "Mean", "Min", "Mul", "Neg", "Not", "Or", "Pow", "Reciprocal", "ReduceL2", "ReduceMax",
    "ReduceMean", "ReduceMin", "ReduceSum", "Relu", "Reshape", "Shape", "Sigmoid", "Sign", "Slice",
    "Softmax", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Tile", "Transpose", "Unsqueeze", "Where",
})
#: Known trouble, refused even where the matrix lists the op: data-dependent shapes or control
#: flow, and scatter with reduction (breaks when edges outnumber nodes; ARCHITECTURE.md).
TENSORRT_TROUBLE_OPS = {
    "ScatterND": "scatter (with reduction: unsupported or wrong in TensorRT's parser)",
    "ScatterElements": "scatter (with reduction: unsupported or wrong in TensorRT's parser)",
    "NonZero": "data-dependent output shape",
    "Loop": "control flow",
    "If": "control flow",
    "GatherND": "data-dependent gather",
    "GatherElements": "data-dependent gather",
}


class OnnxExportError(RuntimeError):
    """An ONNX artifact could not be made or is not what a bundle may carry."""


@dataclass(frozen=True)
class OnnxExport:
    path: Path
    target: str  # "onnx" or "onnx-fp16"
    precision: str  # "float32" or "float16" (inputs and outputs are float32 in both)
    opset: int
    ops: tuple[tuple[str, int], ...]  # (op_type, count), sorted by op_type
    fanout: int
    embedding_dim: int
    entity_types: int  # E of the inputs (ent1_x [B, E, E+1])
    txn_features: int  # Ft of the inputs (target_x [B, Ft])
    saturate: float | None  # the FP16 range rule's clamp bound, None if the graph has none
    seconds: float  # export (or conversion) time
    size: int

    def manifest(self) -> dict[str, Any]:
        """The facts the bundle records for this artifact (JSON-ready)."""
        d = asdict(self)
        d["path"] = str(self.path)
        d["ops"] = {op: n for op, n in self.ops}
        d["io_dtype"] = "float32"
        d["input_names"], d["output_names"] = list(INPUT_NAMES), list(OUTPUT_NAMES)
        return d


def onnx_ops(model_or_path: Any) -> tuple[tuple[str, int], ...]:
    """(op_type, count) of every node, subgraphs included, sorted; a custom domain prefixes the op."""
    import onnx

    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    counts: collections.Counter[str] = collections.Counter()

    def walk(graph: Any) -> None:
        for node in graph.node:
            counts[node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"] += 1
            for attr in node.attribute:
                for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    walk(g)

    walk(model.graph)
    return tuple(sorted(counts.items()))


def tensorrt_op_problems(model_or_path: Any) -> list[str]:
    """Why TensorRT's ONNX parser would reject (or mis-run) the graph; empty when every op is allowed."""
    problems = []
    for op, n in onnx_ops(model_or_path):
        if "::" in op:
            problems.append(f"{op} (x{n}): custom domain, no TensorRT importer")
        elif op in TENSORRT_TROUBLE_OPS:
            problems.append(f"{op} (x{n}): {TENSORRT_TROUBLE_OPS[op]}")
        elif op not in TENSORRT_ONNX_OPS:
            problems.append(f"{op} (x{n}): not in the TensorRT allow-list (TENSORRT_ONNX_OPS)")
    return problems


def _sort_topologically(graph: Any) -> None:
    """Reorder ``graph.node`` so every node follows the producers of its inputs (ONNX requires it)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = [n for n in pending if not all(i in ready for i in n.input)]
        done = [n for n in pending if all(i in ready for i in n.input)]
        if not done:
            raise OnnxExportError(f"the graph has a cycle or a missing input at node {rest[0].name!r}")
        for n in done:
            ready.update(n.output)
        ordered += done
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def _metadata(model: Any) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def _example(dense: DenseGnn, fanout: int, batch: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    shapes = input_shapes(batch, fanout, dense.num_entity_types, dense.txn_features)
    return tuple(torch.rand(shapes[n], generator=g) if n.endswith("_x") else torch.ones(shapes[n])
                 for n in INPUT_NAMES)


def export_onnx(dense: DenseGnn, path: str | Path, fanout: int, opset: int = ONNX_OPSET) -> OnnxExport:
    """Export the dense GNN to one self-contained ONNX file (no ``.data`` beside it), dynamic batch.

    Refuses (OnnxExportError, no file left) a graph with an op TensorRT's parser does not take.
    """
    if not isinstance(dense, DenseGnn):
        raise TypeError(f"export_onnx takes a DenseGnn (libfraud.export.lower.lower(model)), got "
                        f"{type(dense).__name__}")
    if fanout < 1:
        raise ValueError(f"fanout must be >= 1, got {fanout}")
    import onnx
    from torch.export import Dim

    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"an ONNX artifact path must end in .onnx, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    args = _example(dense, fanout)
    batch = Dim("batch", min=1, max=1 << 20)
    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        # torch.onnx's import path touches torch.jit (deprecated upstream, not used here).
        warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATION, category=DeprecationWarning)
        # torch 2.13's exporter deep-copies a graph holding a deprecated LeafSpec (as in export/gnn.py).
        warnings.filterwarnings("ignore", message=_LEAFSPEC_DEPRECATION, category=FutureWarning)
        # All seven inputs share the one batch Dim on purpose; the exporter notes it once per input.
        warnings.filterwarnings("ignore", message=_SHARED_AXIS_NOTE, category=UserWarning)
        program = torch.onnx.export(
            dense.eval(), args, dynamo=True, opset_version=opset, external_data=False,
            input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
            dynamic_shapes=tuple({0: batch} for _ in args), verbose=False)
    program.save(str(path), external_data=False)
    seconds = time.perf_counter() - start
    data = Path(str(path) + ".data")
    if data.exists():  # never leave a half artifact: the bundle carries one file
        data.unlink()
        path.unlink(missing_ok=True)
        raise OnnxExportError(f"the exporter wrote external data beside {path}")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    del model.metadata_props[:]
    for key, value in ((_METADATA_FANOUT, str(fanout)),
                       (_METADATA_SATURATE, "" if dense.saturate is None else repr(dense.saturate))):
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    problems = tensorrt_op_problems(model)
    if problems:
        path.unlink()
        raise OnnxExportError("the dense ONNX graph has ops TensorRT's parser does not take: " + "; ".join(problems))
    opset_found = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return OnnxExport(path=path, target="onnx", precision="float32", opset=int(opset_found),
                      ops=onnx_ops(model), fanout=int(fanout), embedding_dim=int(dense.embedding_dim),
                      entity_types=dense.num_entity_types, txn_features=dense.txn_features,
                      saturate=dense.saturate, seconds=seconds, size=path.stat().st_size)


def convert_fp16(onnx_path: str | Path, out_path: str | Path) -> OnnxExport:
    """The FP16 version of a float32 dense ONNX graph; inputs and outputs stay float32.

    Refuses a graph lowered without saturation (``lower(model, saturate=None)``): FP16's range
    rule needs the Clip nodes (export/lower.py). Check it with ``onnx_runner`` and
    ``check_gnn_parity(..., tolerance=FP16_TOLERANCE)``.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    model = onnx.load(str(onnx_path))
    meta = _metadata(model)
    if not meta.get(_METADATA_SATURATE):
        raise OnnxExportError(f"{onnx_path} has no saturation (metadata {_METADATA_SATURATE!r}); an FP16 graph "
                              "without it turns large inputs into inf/NaN: lower with saturate=FP16_MAX")
    if float(meta[_METADATA_SATURATE]) > FP16_MAX:
        raise OnnxExportError(f"{onnx_path} saturates at {meta[_METADATA_SATURATE]} > FP16's {FP16_MAX}")
    start = time.perf_counter()
    # keep_io_types: float32 at the graph's edges, so every backend is fed the same arrays.
    fp16 = convert_float_to_float16(model, keep_io_types=True)
    _sort_topologically(fp16.graph)  # the converter appends its input Casts after their users
    seconds = time.perf_counter() - start
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(fp16, str(out_path))
    onnx.checker.check_model(fp16, full_check=True)
    problems = tensorrt_op_problems(fp16)
    if problems:
        out_path.unlink()
        raise OnnxExportError("the FP16 ONNX graph has ops TensorRT's parser does not take: " + "; ".join(problems))
    opset_found = max(o.version for o in fp16.opset_import if o.domain in ("", "ai.onnx"))
    emb = fp16.graph.output[1].type.tensor_type.shape.dim[1].dim_value
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in fp16.graph.input}
    return OnnxExport(path=out_path, target="onnx-fp16", precision="float16", opset=int(opset_found),
                      ops=onnx_ops(fp16), fanout=int(meta.get(_METADATA_FANOUT, 0)), embedding_dim=int(emb),
                      entity_types=int(dims["ent1_x"][1]), txn_features=int(dims["target_x"][1]),
                      saturate=float(meta[_METADATA_SATURATE]), seconds=seconds, size=out_path.stat().st_size)


Runner = Callable[..., Any]


def onnx_runner(path: str | Path, threads: int = 1) -> Runner:
    """A runner (for check_gnn_parity) over an ONNX Runtime CPU session of ``path``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(*arrays: Any) -> tuple[np.ndarray, np.ndarray]:
        if len(arrays) != len(INPUT_NAMES):
            raise ValueError(f"expected {len(INPUT_NAMES)} arrays ({', '.join(INPUT_NAMES)}), got {len(arrays)}")
        feed = {n: np.ascontiguousarray(a.numpy() if isinstance(a, torch.Tensor) else a, dtype=np.float32)
                for n, a in zip(INPUT_NAMES, arrays)}
        logit, emb = session.run(list(OUTPUT_NAMES), feed)
        return logit, emb

    return run


def _stack_outputs(out: Any) -> np.ndarray:
    """(logit [N], embedding [N, D]) or an [N, 1 + D] array -> [N, 1 + D] float64."""
    if isinstance(out, (tuple, list)) and len(out) == 2:
        logit, emb = (np.asarray(o, dtype=np.float64) for o in out)
        return np.column_stack([logit.reshape(-1), emb.reshape(logit.size, -1)])
    arr = np.asarray(out, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"GNN outputs must be (logit, embedding) or [N, 1 + D], got shape {arr.shape}")
    return arr


def fp16_score_effect(y_true: Any, gnn_fp32: Any, gnn_fp16: Any,
                      score: Callable[[np.ndarray], Any] | None = None) -> dict[str, float | int]:
    """The AUPRC change when FP16 GNN outputs replace float32 ones in the final score.

    ``gnn_fp32``/``gnn_fp16``: the GNN's outputs on the same rows, as (logit [N], embedding [N, D])
    or [N, 1 + D] (``gnn.output_features`` order). ``score`` maps such an [N, 1 + D] array to the
    final scores [N] (the stacked trees with each row's other features bound); without it the
    score is the GNN's own sigmoid(logit). Returns auprc_fp32, auprc_fp16, auprc_delta
    (fp16 - fp32), max_abs_score_diff, max_abs_gnn_diff, rows.
    """
    from libfraud.metrics import auprc

    a32, a16 = _stack_outputs(gnn_fp32), _stack_outputs(gnn_fp16)
    if a32.shape != a16.shape:
        raise ValueError(f"float32 and FP16 outputs differ in shape: {a32.shape} vs {a16.shape}")
    y = np.asarray(y_true).reshape(-1)
    if y.shape[0] != a32.shape[0]:
        raise ValueError(f"{y.shape[0]} labels for {a32.shape[0]} rows of GNN outputs")
    if score is None:
        def score(a: np.ndarray) -> np.ndarray:
            return 1.0 / (1.0 + np.exp(-a[:, 0]))
    s32 = np.asarray(score(a32), dtype=np.float64).reshape(-1)
    s16 = np.asarray(score(a16), dtype=np.float64).reshape(-1)
    p32, p16 = auprc(y, s32), auprc(y, s16)
    return {"rows": int(y.shape[0]), "auprc_fp32": float(p32), "auprc_fp16": float(p16),
            "auprc_delta": float(p16 - p32), "max_abs_score_diff": float(np.abs(s16 - s32).max()),
            "max_abs_gnn_diff": float(np.abs(a16 - a32).max())}

