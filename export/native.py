"""GNN -> the "native" artifact: FraudGnn's weights in one file the core runs with its own loops
(cpp/src/backends/native_gnn.{h,cpp}), no framework. BUNDLE.md, "Native artifacts", is the spec.

Layout (little-endian): ``b"LFNATIVE"``, uint32 version, uint32 header length, uint64 weights
offset (a multiple of 64), uint64 weights length, the UTF-8 JSON header (zero-padded to the weights
offset), then every float32 tensor at a 64-byte aligned offset inside the weights section.

The native backend executes one fixed program, the dense fixed-fanout form of FraudGnn.forward.
``write_native`` therefore refuses a model it cannot express (a layer it does not know, a SAGEConv
option it does not run, an aggregation other than mean/max/sum), naming the layer and what is
supported, and then checks the program it wrote against the model's own forward on random
neighbourhoods with ``native_reference`` (NumPy, written for clarity): a change to
``FraudGnn.forward`` that adds no layer is caught there rather than in production.
"""

from __future__ import annotations

import copy
import json
import struct
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from libfraud.models.gnn import INPUT_NAMES, TORCHSCRIPT_DEPRECATION, FraudGnn

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATION, category=DeprecationWarning)
    from torch_geometric.nn import SAGEConv

__all__ = ["NATIVE_MAGIC", "NATIVE_VERSION", "NativeExportError", "native_reference", "read_native",
           "write_native"]

NATIVE_MAGIC = b"LFNATIVE"
NATIVE_VERSION = 1
FORMAT = "libfraud-native-gnn"
ALIGN = 64
_FIXED = struct.Struct("<8sIIQQ")  # magic, version, header length, weights offset, weights length

#: Aggregations the native kernels run (PyG names; "add" is written as "sum").
SUPPORTED_AGGR = ("mean", "max", "sum")
#: The child modules FraudGnn may have, and what each must be.
SUPPORTED_LAYERS = {
    "ent_to_txn": "ModuleList of num_entity_types SAGEConv",
    "txn_to_ent": "ModuleList of num_entity_types SAGEConv",
    "ent_to_target": "ModuleList of num_entity_types SAGEConv",
    "embed": "Linear(hidden, embedding_dim)",
    "head": "Linear(embedding_dim, 1)",
}
_STEPS = ("ent_to_txn", "txn_to_ent", "ent_to_target")
_BUFFERS = tuple(f"{n}_{k}" for n in ("target", "txn", "ent") for k in ("shift", "scale"))
#: The program the C++ executes, in order (name, op). The loader refuses any other list.
_PROGRAM = (("input_scaling", "standardise"), ("ent_to_txn", "hetero_sage_sum"),
            ("txn_to_ent", "hetero_sage_per_type"), ("ent_to_target", "hetero_sage_sum"),
            ("embed", "linear"), ("head", "relu_linear"))
#: Parity of the written program against FraudGnn.forward (float64 reference vs float32 eager).
SELF_CHECK_TOL = 1e-4


class NativeExportError(ValueError):
    """The model has a layer or option the native format cannot express (the message names it)."""


def _supported_text() -> str:
    return "; ".join(f"{k}: {v}" for k, v in SUPPORTED_LAYERS.items()) + \
        f"; SAGEConv(aggr in {list(SUPPORTED_AGGR)}, normalize=False, root_weight=True, project=False, bias=True)"


def _refuse(layer: str, what: str) -> None:
    raise NativeExportError(f"native export cannot express layer '{layer}': {what}. "
                            f"Supported: {_supported_text()}")


def _aggr_name(layer: str, conv: torch.nn.Module) -> str:
    aggr = getattr(conv, "aggr", None)
    if not isinstance(aggr, str):
        _refuse(layer, f"aggregation {aggr!r}")
    aggr = "sum" if aggr == "add" else aggr
    if aggr not in SUPPORTED_AGGR:
        _refuse(layer, f"aggregation '{aggr}'")
    return aggr


def _check_conv(layer: str, conv: torch.nn.Module, in_l: int, in_r: int, hidden: int) -> str:
    if type(conv) is not SAGEConv:
        _refuse(layer, f"{type(conv).__name__} is not a SAGEConv")
    for flag, want in (("normalize", False), ("root_weight", True), ("project", False)):
        if bool(getattr(conv, flag)) != want:
            _refuse(layer, f"{flag}={getattr(conv, flag)}")
    if conv.lin_l.bias is None:
        _refuse(layer, "bias=False")
    extra = sorted(n for n, _ in conv.named_parameters() if n not in ("lin_l.weight", "lin_l.bias", "lin_r.weight"))
    extra += sorted(n for n, _ in conv.named_buffers())
    if extra:
        _refuse(layer, f"unexpected parameters/buffers {extra}")
    for name, shape in (("lin_l.weight", (hidden, in_l)), ("lin_r.weight", (hidden, in_r))):
        got = tuple(conv.get_parameter(name).shape)
        if got != shape:
            _refuse(layer, f"{name} has shape {list(got)}, expected {list(shape)}")
    return _aggr_name(layer, conv)


def _collect(model: FraudGnn) -> tuple[dict[str, Any], list[tuple[str, np.ndarray]]]:
    """The header's architecture and the tensors, after checking every layer is expressible."""
    if not isinstance(model, FraudGnn):
        raise TypeError(f"model must be a FraudGnn, got {type(model).__name__}")
    H, D = int(model.hidden), int(model.embedding_dim)
    E, Ft, Fe = int(model.num_entity_types), int(model.txn_features), int(model.num_entity_types) + 1
    for name, child in model.named_children():
        if name not in SUPPORTED_LAYERS:
            _refuse(name, f"{type(child).__name__} is not a layer of the native program")
    buffers = {n for n, _ in model.named_buffers(recurse=False)}
    if buffers != set(_BUFFERS):
        _refuse(", ".join(sorted(buffers ^ set(_BUFFERS))) or "buffers", "buffers differ from the input scaling")
    if set(n for n, _ in model.named_parameters(recurse=False)):
        _refuse("(model)", "parameters outside the layers")

    aggr = {}
    ins = {"ent_to_txn": (Fe, Ft), "txn_to_ent": (H, Fe), "ent_to_target": (H, Ft)}
    for step in _STEPS:
        convs = getattr(model, step, None)
        if not isinstance(convs, torch.nn.ModuleList) or len(convs) != E:
            _refuse(step, f"expected a ModuleList of {E} SAGEConv, got {type(convs).__name__}")
        kinds = {_check_conv(f"{step}.{i}", c, *ins[step], H) for i, c in enumerate(convs)}
        if len(kinds) != 1:
            _refuse(step, f"mixed aggregations {sorted(kinds)} across entity types")
        aggr[step] = kinds.pop()
    for name, shape in (("embed", (D, H)), ("head", (1, D))):
        lin = getattr(model, name)
        if type(lin) is not torch.nn.Linear or lin.bias is None or tuple(lin.weight.shape) != shape:
            _refuse(name, f"{lin!r}, expected Linear({shape[1]}, {shape[0]}) with bias")

    tensors = [(n, t.detach().cpu().to(torch.float32).contiguous().numpy()) for n, t in model.state_dict().items()]
    program = [{"name": n, "op": op, **({"aggr": aggr[n]} if n in aggr else {})} for n, op in _PROGRAM]
    # Entity names belong to the bundle's schema; the artifact needs only the counts.
    arch = {"model": "FraudGnn", "hidden": H, "embedding_dim": D, "entity_types": E, "txn_features": Ft,
            "ent_features": Fe, "aggregation": aggr, "layers": program}
    return arch, tensors


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def write_native(model: FraudGnn, path: str | Path, *, self_check: bool = True) -> dict[str, Any]:
    """Write ``model`` (a trained FraudGnn) as a native artifact at ``path``.

    Returns the manifest fields: ``target`` ("native"), ``precision`` ("float32"),
    ``format_version``, ``hidden``, ``embedding_dim``, ``entity_types``, ``txn_features``,
    ``aggregation`` per step, ``tensors``
    (count), ``size`` (bytes) and, with ``self_check``, ``self_check_max_abs_diff`` (the written
    program, in NumPy float64, against the model's eager forward). Raises NativeExportError naming
    a layer the format cannot express, or when the self-check finds forward does something else.
    """
    model = copy.deepcopy(model).cpu().eval()
    arch, tensors = _collect(model)
    entries, blobs, offset = [], [], 0
    for name, arr in tensors:
        entries.append({"name": name, "shape": list(arr.shape), "offset": offset})
        data = arr.astype("<f4", copy=False).tobytes()
        pad = _align(len(data)) - len(data)
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
    header = {"format": FORMAT, "version": NATIVE_VERSION, "target": "native", "precision": "float32",
              "byte_order": "little", "architecture": arch, "tensors": entries}
    hjson = json.dumps(header, separators=(",", ":")).encode()
    w_off = _align(_FIXED.size + len(hjson))
    out = bytearray(_FIXED.pack(NATIVE_MAGIC, NATIVE_VERSION, len(hjson), w_off, offset))
    out += hjson + b"\0" * (w_off - _FIXED.size - len(hjson))
    out += b"".join(blobs)

    report: dict[str, Any] = {
        "target": "native", "precision": "float32", "format_version": NATIVE_VERSION,
        "hidden": arch["hidden"], "embedding_dim": arch["embedding_dim"],
        "entity_types": arch["entity_types"], "txn_features": arch["txn_features"],
        "aggregation": arch["aggregation"], "tensors": len(entries), "size": len(out),
    }
    if self_check:
        report["self_check_max_abs_diff"] = _self_check(model, {n: a for n, a in tensors}, arch)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(bytes(out))
    tmp.replace(path)  # a reader never sees half a file
    return report


def read_native(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header, tensors by name) of a native artifact; ValueError on a malformed file."""
    raw = Path(path).read_bytes()
    if len(raw) < _FIXED.size:
        raise ValueError(f"{path}: truncated ({len(raw)} bytes)")
    magic, version, hlen, w_off, w_len = _FIXED.unpack_from(raw)
    if magic != NATIVE_MAGIC or version != NATIVE_VERSION:
        raise ValueError(f"{path}: magic {magic!r} version {version}, expected {NATIVE_MAGIC!r} {NATIVE_VERSION}")
    if w_off + w_len > len(raw):
        raise ValueError(f"{path}: truncated ({len(raw)} bytes, header says {w_off + w_len})")
    header = json.loads(raw[_FIXED.size:_FIXED.size + hlen])
    tensors = {}
    for t in header["tensors"]:
        n = int(np.prod(t["shape"], dtype=np.int64))
        tensors[t["name"]] = np.frombuffer(raw, dtype="<f4", count=n, offset=w_off + t["offset"]).reshape(t["shape"])
    return header, tensors


def native_reference(arrays: Sequence[Any] | Mapping[str, Any], tensors: Mapping[str, np.ndarray],
                     arch: Mapping[str, Any], dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """The native program in NumPy, for clarity: (logits [B], embeddings [B, D]).

    Dense fixed-fanout form: a SAGEConv on a slot is lin_l(aggr of its unmasked neighbours, 0 when
    none) + lin_r(own features); convs of one step are summed over entity types, except hop 2 -> 1
    where each hop-1 entity has its own type's conv.
    """
    if isinstance(arrays, Mapping):
        arrays = [arrays[n] for n in INPUT_NAMES]
    tx, e1, m1, t2, m2, e3, m3 = (np.asarray(a, dtype=dtype) for a in arrays)
    W = {k: np.asarray(v, dtype=dtype) for k, v in tensors.items()}
    E = int(arch["entity_types"])
    aggr = arch["aggregation"]

    def lin(name, x):
        out = x @ W[f"{name}.weight"].T
        return out + W[f"{name}.bias"] if f"{name}.bias" in W else out

    def reduce(x, m, how, axis):  # masked reduction over `axis`; 0 where nothing is unmasked
        mm = np.expand_dims(m > 0, -1)
        n = mm.sum(axis)
        if how == "max":
            out = np.where(mm, x, -np.inf).max(axis)
            return np.where(n > 0, out, 0.0)
        s = np.where(mm, x, 0.0).sum(axis)
        return s / np.maximum(n, 1) if how == "mean" else s

    tx = (tx - W["target_shift"]) * W["target_scale"]
    t2 = (t2 - W["txn_shift"]) * W["txn_scale"]
    e1 = (e1 - W["ent_shift"]) * W["ent_scale"]
    e3 = (e3 - W["ent_shift"]) * W["ent_scale"]
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731

    # hop 3 -> hop 2: one neighbour per type, so every aggregation is the masked identity.
    h2 = sum(lin(f"ent_to_txn.{f}.lin_l", reduce(e3[..., f:f + 1, :], m3[..., f:f + 1], aggr["ent_to_txn"], -2))
             + lin(f"ent_to_txn.{f}.lin_r", t2) for f in range(E))
    h2 = relu(h2)                                                     # [B,E,K,H]
    h1 = np.stack([lin(f"txn_to_ent.{e}.lin_l", reduce(h2[:, e], m2[:, e], aggr["txn_to_ent"], 1))
                   + lin(f"txn_to_ent.{e}.lin_r", e1[:, e]) for e in range(E)], axis=1)
    h1 = relu(h1)                                                     # [B,E,H]
    h0 = sum(lin(f"ent_to_target.{e}.lin_l", reduce(h1[:, e:e + 1], m1[:, e:e + 1], aggr["ent_to_target"], 1))
             + lin(f"ent_to_target.{e}.lin_r", tx) for e in range(E))
    emb = lin("embed", relu(h0))
    return lin("head", relu(emb)).reshape(-1), emb


def _random_neighbourhood(rng: np.random.Generator, batch: int, fanout: int, E: int, Ft: int) -> list[np.ndarray]:
    Fe, K = E + 1, fanout
    m1 = (rng.random((batch, E)) < 0.8).astype(np.float32)
    m2 = (rng.random((batch, E, K)) < 0.6).astype(np.float32) * m1[..., None]
    m3 = (rng.random((batch, E, K, E)) < 0.7).astype(np.float32) * m2[..., None]
    x = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    return [x(batch, Ft), x(batch, E, Fe) * m1[..., None], m1, x(batch, E, K, Ft) * m2[..., None], m2,
            x(batch, E, K, E, Fe) * m3[..., None], m3]


def _self_check(model: FraudGnn, tensors: Mapping[str, np.ndarray], arch: Mapping[str, Any]) -> float:
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch, fanout in ((16, 3), (8, 10)):
        arrays = _random_neighbourhood(rng, batch, fanout, arch["entity_types"], arch["txn_features"])
        arrays[2][0] = 0.0  # one cold start
        with torch.no_grad():
            logit, emb = model(*(torch.from_numpy(a) for a in arrays))
        ref_logit, ref_emb = native_reference(arrays, tensors, arch)
        diff = max(float(np.abs(logit.numpy() - ref_logit).max()), float(np.abs(emb.numpy() - ref_emb).max()))
        worst = max(worst, diff)
        scale = 1.0 + max(float(np.abs(ref_logit).max()), float(np.abs(ref_emb).max()))
        if not diff <= SELF_CHECK_TOL * scale:
            raise NativeExportError(
                f"FraudGnn.forward computes something the native program does not (max |diff| {diff:.3g} on "
                f"batch {batch}, fanout {fanout}): the model changed in a way write_native does not know; "
                f"supported: {_supported_text()}")
    return worst
