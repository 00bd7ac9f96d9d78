"""Lowering: the trained message-passing FraudGnn (PyG) -> DenseGnn, the dense fixed-fanout form.

The sampler's fanout is fixed, so every neighbour set is a padded axis with a mask and each PyG
aggregation becomes a masked reduction over that axis (ARCHITECTURE.md, "The GNN has two forms"):

    neighbours                                       dense tensor          mask
    hop 3 -> hop 2  ent3[b,e,k,f] of txn2[b,e,k]      [B,E,K,E,Fe] (0/1)    [B,E,K,E]
    hop 2 -> hop 1  txn2[b,e,:]   of ent1[b,e]        [B,E,K,H]    (0..K)   [B,E,K]
    hop 1 -> target ent1[b,e]     of the target       [B,E,H]      (0/1)    [B,E]

PyG semantics matched exactly (torch_geometric.utils.scatter, SAGEConv.forward):
- a slot is a neighbour iff its mask is > 0 (FraudGnn routes any other slot's edge to a sink);
- mean = sum(where(m, x, 0)) / max(count, 1): an empty set gives 0 (scatter_add / clamped count);
- max  = amax(where(m, x, fill)), then 0 where the set is empty (scatter_reduce "amax",
  include_self=False, into zeros); sum = sum(where(m, x, 0));
- with at most one neighbour every aggregation is where(m, x, 0) (x / 1 is exact);
- SAGEConv: lin_l(agg) + lin_r(x_dst) [root_weight], then F.normalize [normalize].
Per-entity-type convs (the heterogeneous part) become stacked weights [E, in, out] applied with one
broadcast MatMul. ``where`` (not ``x * m``) keeps a masked slot's value out even when it is inf.

Only dense ops are used (MatMul, Add, Mul, Sub, Div, ReduceSum, ReduceMax, Relu, Where, Clip, ...):
no scatter and no gather with data-dependent indices, so the graph exports to ONNX and TensorRT.

Saturation (the FP16 range rule): with ``saturate=65504`` (FP16's largest finite value, the
default) every graph input, the standardised inputs, every MatMul/aggregation output and every
stage's output are clamped to +-65504. In float32 this changes nothing unless a value leaves
FP16's range; in FP16 an overflow (inf) becomes +-65504 before it can meet another inf, so no
input, however large, yields inf or NaN outputs. ``saturate=None`` gives PyG's float32 arithmetic
for any input. NaN inputs are not covered: the core rejects them before the GNN.

``lower`` refuses what it cannot lower (``UnsupportedLayerError``, naming the layer and listing
the supported ones) and then checks the dense form against the PyG model on a probe batch
(random, cold-start and partly masked rows), so a changed ``FraudGnn.forward`` that the lowering
does not know cannot give a silently different network (``LoweringMismatchError``).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from libfraud.models.gnn import INPUT_NAMES, TORCHSCRIPT_DEPRECATION, FraudGnn, input_shapes

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATION, category=DeprecationWarning)
    from torch_geometric.nn import SAGEConv
    from torch_geometric.nn.aggr import MaxAggregation, MeanAggregation, SumAggregation
    from torch_geometric.nn.dense.linear import Linear as PygLinear

__all__ = [
    "AGGREGATIONS",
    "FP16_MAX",
    "PROBE_TOLERANCE",
    "SUPPORTED_LAYERS",
    "DenseGnn",
    "LoweringMismatchError",
    "UnsupportedLayerError",
    "lower",
]

#: FP16's largest finite value: the saturation bound of the FP16-capable dense graph.
FP16_MAX = 65504.0
#: Dense vs PyG (float32) on the probe batch inside ``lower``; the parity tests use the same.
PROBE_TOLERANCE = 1e-5

#: PyG aggregation module -> the masked reduction that replaces it.
AGGREGATIONS = {MeanAggregation: "mean", MaxAggregation: "max", SumAggregation: "sum"}

#: Layer types the lowering knows, and what it accepts of each (listed in every refusal).
SUPPORTED_LAYERS: dict[type, str] = {
    FraudGnn: "the root: its buffers target/txn/ent_{shift,scale} and the attributes below",
    nn.ModuleList: "ent_to_txn, txn_to_ent, ent_to_target: one SAGEConv per entity type",
    SAGEConv: "aggr mean|max|sum (one per stage), root_weight, normalize, bias; not project",
    MeanAggregation: "inside SAGEConv", MaxAggregation: "inside SAGEConv", SumAggregation: "inside SAGEConv",
    PygLinear: "SAGEConv's lin_l / lin_r",
    nn.Linear: "embed, head",
}
_STAGES = ("ent_to_txn", "txn_to_ent", "ent_to_target")  # hop 3->2, hop 2->1, hop 1->target
_LINEARS = ("embed", "head")
_BUFFERS = tuple(f"{n}_{k}" for n in ("target", "txn", "ent") for k in ("shift", "scale"))


def _supported_list() -> str:
    return "; ".join(f"{t.__module__}.{t.__qualname__} ({why})" for t, why in SUPPORTED_LAYERS.items())


class UnsupportedLayerError(TypeError):
    """The model holds a layer (or an option of one) the dense lowering cannot express."""

    def __init__(self, name: str, module: object, reason: str = "") -> None:
        kind = f"{type(module).__module__}.{type(module).__qualname__}"
        self.layer_name, self.layer_type = name or "<root>", kind
        why = f": {reason}" if reason else ""
        super().__init__(f"cannot lower layer {self.layer_name!r} of type {kind}{why}. "
                         f"Supported: {_supported_list()}")


class LoweringMismatchError(RuntimeError):
    """The dense form disagrees with the PyG model: its forward does something the lowering does not."""


@dataclass(frozen=True)
class _Stage:
    aggr: str
    normalize: bool
    w_l: Tensor  # [E, in_src, out]
    b_l: Tensor  # [E, out]
    w_r: Tensor  # [E, in_dst, out] (zeros without root_weight)


def _linear_weight(name: str, lin: nn.Module) -> Tensor:
    w = lin.weight
    if isinstance(w, nn.parameter.UninitializedParameter):
        raise UnsupportedLayerError(name, lin, "uninitialised (lazy) weights; run one forward first")
    return w.detach().float().clone()


def _lower_stage(name: str, convs: nn.Module) -> _Stage:
    if not isinstance(convs, nn.ModuleList):
        raise UnsupportedLayerError(name, convs, "expected a ModuleList of SAGEConv, one per entity type")
    aggrs, norms, w_l, b_l, w_r = set(), set(), [], [], []
    for i, conv in enumerate(convs):
        q = f"{name}.{i}"
        if type(conv) is not SAGEConv:
            raise UnsupportedLayerError(q, conv)
        agg = AGGREGATIONS.get(type(conv.aggr_module))
        if agg is None:
            raise UnsupportedLayerError(f"{q}.aggr_module", conv.aggr_module,
                                        f"aggregation {conv.aggr!r}; supported: {sorted(AGGREGATIONS.values())}")
        if conv.project:
            raise UnsupportedLayerError(q, conv, "project=True")
        for child_name, child in conv.named_children():
            if child_name not in ("aggr_module", "lin_l", "lin_r") or \
                    (child_name != "aggr_module" and type(child) is not PygLinear):
                raise UnsupportedLayerError(f"{q}.{child_name}", child)
        wl = _linear_weight(f"{q}.lin_l", conv.lin_l)  # [out, in_src]
        out = wl.shape[0]
        bl = conv.lin_l.bias.detach().float() if conv.lin_l.bias is not None else torch.zeros(out)
        if conv.root_weight:
            wr = _linear_weight(f"{q}.lin_r", conv.lin_r)
            if conv.lin_r.bias is not None:  # PyG builds it bias-free; fold one in if someone adds it
                bl = bl + conv.lin_r.bias.detach().float()
        else:
            in_dst = conv.in_channels[1] if isinstance(conv.in_channels, tuple) else conv.in_channels
            wr = torch.zeros(out, in_dst)
        aggrs.add(agg)
        norms.add(bool(conv.normalize))
        w_l.append(wl.t())
        b_l.append(bl)
        w_r.append(wr.t())
    if len(aggrs) != 1 or len(norms) != 1:
        raise UnsupportedLayerError(name, convs, f"mixed options across entity types (aggr {sorted(aggrs)}, "
                                    f"normalize {sorted(norms)}); the stacked form needs one per stage")
    return _Stage(aggrs.pop(), norms.pop(), torch.stack(w_l), torch.stack(b_l), torch.stack(w_r))


def _check_structure(model: FraudGnn) -> None:
    """Refuse any layer, parameter or buffer the lowering does not place (never silently drop one)."""
    if type(model) is not FraudGnn:
        # A subclass may override forward: only the exact class has the forward lowered here.
        raise UnsupportedLayerError("", model, "only libfraud.models.gnn.FraudGnn itself is lowered")
    known = set(_STAGES) | set(_LINEARS)
    for name, child in model.named_children():
        if name not in known:
            raise UnsupportedLayerError(name, child, "not a layer of FraudGnn's lowered forward "
                                        f"({', '.join(_STAGES + _LINEARS)})")
    for name in _LINEARS:
        layer = getattr(model, name, None)
        if type(layer) is not nn.Linear:
            raise UnsupportedLayerError(name, layer, "expected torch.nn.Linear")
    for name, _ in model.named_parameters(recurse=False):
        raise UnsupportedLayerError(name, model, "a parameter on the root that the lowering does not place")
    for name, _ in model.named_buffers(recurse=False):
        if name not in _BUFFERS:
            raise UnsupportedLayerError(name, model, "a buffer on the root that the lowering does not place")


class DenseGnn(nn.Module):
    """FraudGnn in dense fixed-fanout form: same seven inputs, same ``(logit [B], embedding [B,D])``.

    Built by ``lower``; eval-only (dropout is the identity). Any fanout and batch at run time; the
    model's E (``num_entity_types``) and Ft (``txn_features``).
    """

    def __init__(self, stages: Tuple[_Stage, _Stage, _Stage], embed: nn.Linear, head: nn.Linear,
                 buffers: dict[str, Tensor], saturate: float | None = FP16_MAX) -> None:
        super().__init__()
        self.saturate = None if saturate is None else float(saturate)
        self.aggr = tuple(s.aggr for s in stages)
        self.normalize = tuple(s.normalize for s in stages)
        self.embedding_dim = int(embed.out_features)
        # E and Ft from the hop 3 -> 2 weights: w_l [E, Fe, H], w_r [E, Ft, H].
        self.num_entity_types = int(stages[0].w_l.shape[0])
        self.txn_features = int(stages[0].w_r.shape[1])
        for name, value in buffers.items():
            self.register_buffer(name, value.detach().float().clone())
        for i, s in enumerate(stages):
            self.register_buffer(f"w_l{i}", s.w_l.contiguous())
            self.register_buffer(f"b_l{i}", s.b_l.contiguous())
            self.register_buffer(f"w_r{i}", s.w_r.contiguous())
        self.register_buffer("w_embed", embed.weight.detach().float().t().contiguous())
        self.register_buffer("b_embed", embed.bias.detach().float().clone() if embed.bias is not None
                             else torch.zeros(embed.out_features))
        self.register_buffer("w_head", head.weight.detach().float().t().contiguous())
        self.register_buffer("b_head", head.bias.detach().float().clone() if head.bias is not None
                             else torch.zeros(head.out_features))
        self.eval()

    # -- pieces -----------------------------------------------------------------------------------
    def _sat(self, x: Tensor) -> Tensor:
        return x if self.saturate is None else x.clamp(-self.saturate, self.saturate)

    def _typed(self, x: Tensor, w: Tensor) -> Tensor:
        """x [..., E, in] @ w [E, in, out] -> [..., E, out]: type e's weights on slot e (x's E axis
        may be 1: one input seen by every type's weights, broadcast by MatMul, no Expand)."""
        return self._sat(torch.matmul(x.unsqueeze(-2), w).squeeze(-2))

    def _aggregate(self, x: Tensor, present: Tensor, aggr: str, dim: int) -> Tensor:
        """PyG's aggregation over axis ``dim`` of x [..., N, F] with ``present`` [..., N] (bool)."""
        m = present.unsqueeze(-1)
        if aggr == "max":
            fill = float("-inf") if self.saturate is None else -self.saturate  # values are >= -saturate
            top = torch.amax(torch.where(m, x, fill), dim=dim)
            return torch.where(m.any(dim=dim), top, 0.0)
        total = self._sat(torch.where(m, x, 0.0).sum(dim=dim))
        if aggr == "sum":
            return total
        count = m.to(x.dtype).sum(dim=dim).clamp(min=1.0)
        return total / count

    def _conv(self, i: int, agg: Tensor, x_dst: Tensor) -> Tensor:
        """SAGEConv per entity type: agg [..., E, in_src], x_dst [..., E, in_dst] -> [..., E, out]."""
        out = self._sat(self._typed(agg, getattr(self, f"w_l{i}")) + getattr(self, f"b_l{i}")
                        + self._typed(x_dst, getattr(self, f"w_r{i}")))
        if self.normalize[i]:
            out = F.normalize(out, p=2.0, dim=-1)
        return out

    def _standardise(self, x: Tensor, name: str) -> Tensor:
        return self._sat((self._sat(x) - getattr(self, f"{name}_shift")) * getattr(self, f"{name}_scale"))

    # -- the network ------------------------------------------------------------------------------
    def forward(self, target_x: Tensor, ent1_x: Tensor, ent1_mask: Tensor, txn2_x: Tensor,
                txn2_mask: Tensor, ent3_x: Tensor, ent3_mask: Tensor) -> Tuple[Tensor, Tensor]:
        target_x = self._standardise(target_x, "target")
        txn2_x = self._standardise(txn2_x, "txn")
        ent1_x = self._standardise(ent1_x, "ent")
        ent3_x = self._standardise(ent3_x, "ent")
        m1, m2, m3 = ent1_mask > 0, txn2_mask > 0, ent3_mask > 0

        # hop 3 -> hop 2: transaction (b,e,k) has at most one entity of each type f.
        agg = torch.where(m3.unsqueeze(-1), ent3_x, 0.0)       # [B,E,K,E,Fe]
        x_dst = txn2_x.unsqueeze(-2)                                                   # [B,E,K,1,Ft]
        h2 = torch.relu(self._sat(self._conv(0, agg, x_dst).sum(dim=-2)))              # [B,E,K,H]

        # hop 2 -> hop 1: entity (b,e) aggregates its K sampled transactions.
        agg = self._aggregate(h2, m2, self.aggr[1], dim=2)                             # [B,E,H]
        h1 = torch.relu(self._conv(1, agg, ent1_x))                                    # [B,E,H]

        # hop 1 -> target: at most one entity per type, convs summed over types.
        agg = torch.where(m1.unsqueeze(-1), h1, 0.0)               # [B,E,H]
        x_dst = target_x.unsqueeze(-2)                                                 # [B,1,Ft]
        h0 = torch.relu(self._sat(self._conv(2, agg, x_dst).sum(dim=-2)))              # [B,H]

        embedding = self._sat(torch.matmul(h0, self.w_embed) + self.b_embed)
        logit = self._sat(torch.matmul(torch.relu(embedding), self.w_head) + self.b_head)
        return logit.squeeze(-1), embedding


def _probe(batch: int, fanout: int, seed: int, num_entity_types: int, txn_features: int) -> tuple[Tensor, ...]:
    """Random rows in the contract's layout (nested masks, zero padding), one cold-start row."""
    g = torch.Generator().manual_seed(seed)
    s = input_shapes(batch, fanout, num_entity_types, txn_features)
    m1 = (torch.rand(s["ent1_mask"], generator=g) < 0.7).float()
    m2 = (torch.rand(s["txn2_mask"], generator=g) < 0.7).float() * m1[:, :, None]
    m3 = (torch.rand(s["ent3_mask"], generator=g) < 0.7).float() * m2[..., None]
    m1[0], m2[0], m3[0] = 0, 0, 0
    rnd = {n: torch.randn(s[n], generator=g) for n in ("target_x", "ent1_x", "txn2_x", "ent3_x")}
    a = {"target_x": rnd["target_x"], "ent1_x": rnd["ent1_x"] * m1[..., None], "ent1_mask": m1,
         "txn2_x": rnd["txn2_x"] * m2[..., None], "txn2_mask": m2,
         "ent3_x": rnd["ent3_x"] * m3[..., None], "ent3_mask": m3}
    return tuple(a[n] for n in INPUT_NAMES)


def lower(model: FraudGnn, saturate: float | None = FP16_MAX, *, check: bool = True) -> DenseGnn:
    """The dense fixed-fanout form of a trained FraudGnn (eval semantics; the model is not changed).

    Raises UnsupportedLayerError for any layer or option it cannot express, and (``check``)
    LoweringMismatchError when the dense form differs from the model on a probe batch by more than
    PROBE_TOLERANCE (the model's forward changed in a way this lowering does not know).
    """
    _check_structure(model)
    model = copy.deepcopy(model).cpu().float().eval()
    stages = tuple(_lower_stage(name, getattr(model, name)) for name in _STAGES)
    buffers = {name: getattr(model, name) for name in _BUFFERS}
    dense = DenseGnn(stages, model.embed, model.head, buffers, saturate=saturate)
    if check:
        args = _probe(8, 3, 0, model.num_entity_types, model.txn_features)
        with torch.no_grad():
            want, got = model(*args), dense(*args)
        # Relative: random probe inputs can drive a trained model's activations far beyond real
        # ones, where float32 summation order alone moves results by more than 1e-5 absolute. The
        # absolute contract is checked on real neighbourhoods by export.gnn.check_gnn_parity.
        scale = max(1.0, max(float(w.abs().max()) for w in want))
        diff = max(float((w - g).abs().max()) for w, g in zip(want, got)) / scale
        if not diff <= PROBE_TOLERANCE:  # also catches NaN
            raise LoweringMismatchError(
                f"the dense form differs from {type(model).__name__} by {diff:.3g} (relative) > {PROBE_TOLERANCE:g} "
                "on the probe batch: its forward does something libfraud.export.lower does not lower")
    return dense
