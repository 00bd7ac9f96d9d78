"""The fraud GNN: a heterogeneous GraphSAGE over one sampled neighbourhood (message-passing form).

Inputs are the seven float32 arrays of ``cpp/src/sampler/neighbourhood.h`` for a batch of B targets
with fanout K, E entity types (``num_entity_types``, 1..16), Ft transaction features
(``txn_features``) and Fe = E + 1 entity features (one-hot type, log1p degree), in this order:

    target_x [B,Ft], ent1_x [B,E,Fe], ent1_mask [B,E], txn2_x [B,E,K,Ft], txn2_mask [B,E,K],
    ent3_x [B,E,K,E,Fe], ent3_mask [B,E,K,E]

and the outputs are ``(logit [B], embedding [B,D])``. TorchScript, AOTInductor and the C++ plugin
all share this signature (``INPUT_NAMES``).

Messages flow bottom-up, each step with one PyG ``SAGEConv`` per entity type (HeteroConv-style,
summed over types): hop-3 entities -> hop-2 transactions -> hop-1 entities -> target. The edge
index is built inside ``forward`` from the fixed shapes: every slot gets an edge, and a masked
slot's edge goes to one dummy sink node appended to the destination set. Mean aggregation at a
real node therefore counts only valid neighbours, no shape depends on the data (torch.export
needs that), and a masked slot's features cannot reach any real node: changing them leaves the
outputs bit-identical. A target with every mask 0 (cold start) sees only its own features.
"""

from __future__ import annotations

import warnings
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# PyG (and torch's own Inductor) call torch.jit.script* at import time, which warns in torch >= 2.11;
# silence exactly that, so importing this module works under `-W error` (pytest strict).
TORCHSCRIPT_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATION, category=DeprecationWarning)
    from torch_geometric.nn import SAGEConv

__all__ = ["ENTITY_TYPES", "ENT_FEATURES", "INPUT_NAMES", "MAX_ENTITY_TYPES", "TXN_FEATURES", "FraudGnn",
           "input_shapes"]

# Defaults only (the original card, device, merchant, ip schema); a model's own sizes are its
# num_entity_types / txn_features.
ENTITY_TYPES = 4
TXN_FEATURES = 5
ENT_FEATURES = ENTITY_TYPES + 1  # one-hot type, log1p(degree)
MAX_ENTITY_TYPES = 16  # FRAUD_GNN_MAX_ENTITY_TYPES

#: The model's inputs, in argument order; also the keys of a neighbourhood arrays dict.
INPUT_NAMES: Tuple[str, ...] = (
    "target_x", "ent1_x", "ent1_mask", "txn2_x", "txn2_mask", "ent3_x", "ent3_mask",
)


def input_shapes(batch: int, fanout: int, num_entity_types: int = ENTITY_TYPES,
                 txn_features: int = TXN_FEATURES) -> dict[str, tuple[int, ...]]:
    """The contract's shape of each input for ``batch`` targets, fanout K, E entity types and Ft
    transaction features."""
    E, Ft, Fe, K = num_entity_types, txn_features, num_entity_types + 1, fanout
    return {
        "target_x": (batch, Ft), "ent1_x": (batch, E, Fe), "ent1_mask": (batch, E),
        "txn2_x": (batch, E, K, Ft), "txn2_mask": (batch, E, K),
        "ent3_x": (batch, E, K, E, Fe), "ent3_mask": (batch, E, K, E),
    }


def _star_edges(n_dst: int, fan: int, mask: Tensor) -> Tensor:
    """Edges src j -> dst j // fan for n_dst * fan sources; masked sources go to the sink n_dst.

    ``mask`` has n_dst * fan elements in source order. Shapes depend only on n_dst and fan.
    """
    src = torch.arange(n_dst * fan, device=mask.device)
    dst = torch.div(src, fan, rounding_mode="floor")
    dst = torch.where(mask.reshape(-1) > 0, dst, torch.full_like(dst, n_dst))
    return torch.stack([src, dst], dim=0)


def _with_sink(x: Tensor) -> Tensor:
    return torch.cat([x, x.new_zeros(1, x.size(1))], dim=0)


class FraudGnn(nn.Module):
    """Heterogeneous GraphSAGE over a fixed-fanout temporal neighbourhood.

    ``num_entity_types`` (E) and ``txn_features`` (Ft) set the weights' shapes; ``fanout`` does not,
    so one trained model runs on any fanout (the exported artifacts bake in the example's K).
    """

    def __init__(self, hidden: int = 48, embedding_dim: int = 16, dropout: float = 0.1, *,
                 num_entity_types: int = ENTITY_TYPES, txn_features: int = TXN_FEATURES) -> None:
        super().__init__()
        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)
        if not is_int(num_entity_types) or not 1 <= num_entity_types <= MAX_ENTITY_TYPES:
            raise ValueError(f"num_entity_types must be an integer in 1..{MAX_ENTITY_TYPES}, got {num_entity_types!r}")
        if not is_int(txn_features) or txn_features < 1:
            raise ValueError(f"txn_features must be a positive integer, got {txn_features!r}")
        self.hidden = hidden
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.num_entity_types = num_entity_types
        self.txn_features = txn_features
        self.ent_features = num_entity_types + 1
        E, Ft, Fe, H = num_entity_types, txn_features, num_entity_types + 1, hidden
        # One conv per entity type at each step: the relation (e.g. "device of") sets the weights.
        self.ent_to_txn = nn.ModuleList([SAGEConv((Fe, Ft), H, aggr="mean") for _ in range(E)])
        self.txn_to_ent = nn.ModuleList([SAGEConv((H, Fe), H, aggr="mean") for _ in range(E)])
        self.ent_to_target = nn.ModuleList([SAGEConv((H, Ft), H, aggr="mean") for _ in range(E)])
        self.embed = nn.Linear(H, embedding_dim)
        self.head = nn.Linear(embedding_dim, 1)
        # Inputs are standardised inside the model (x - shift) * scale, so every artifact applies the
        # same scaling; identity until training sets it (set_input_scaling), saved in the state dict.
        for name, width in (("target", Ft), ("txn", Ft), ("ent", Fe)):
            self.register_buffer(f"{name}_shift", torch.zeros(width))
            self.register_buffer(f"{name}_scale", torch.ones(width))

    def input_shapes(self, batch: int, fanout: int) -> dict[str, tuple[int, ...]]:
        """``input_shapes`` for this model's E and Ft."""
        return input_shapes(batch, fanout, self.num_entity_types, self.txn_features)

    def set_input_scaling(self, target_x: Tensor, txn_x: Tensor, ent_x: Tensor) -> None:
        """Set the standardisation from unmasked example rows: targets [N,Ft], hop-2 transactions
        [M,Ft], entities [L,Fe]; a feature that barely varies (a one-hot type) is only centred."""
        with torch.no_grad():
            for name, x in (("target", target_x), ("txn", txn_x), ("ent", ent_x)):
                x = x.reshape(-1, x.size(-1)).float()
                std = x.std(dim=0) if x.size(0) > 1 else torch.ones(x.size(1))
                getattr(self, f"{name}_shift").copy_(x.mean(dim=0) if x.size(0) else torch.zeros(x.size(1)))
                getattr(self, f"{name}_scale").copy_(torch.where(std > 1e-3, 1.0 / std, torch.ones_like(std)))

    def forward(self, target_x: Tensor, ent1_x: Tensor, ent1_mask: Tensor, txn2_x: Tensor,
                txn2_mask: Tensor, ent3_x: Tensor, ent3_mask: Tensor) -> Tuple[Tensor, Tensor]:
        # Sizes from the inputs (TorchScript cannot read module-level ints); all static but B.
        B, Ft = target_x.size(0), target_x.size(1)
        E, Fe = ent1_x.size(1), ent1_x.size(2)
        K = txn2_x.size(2)
        if E != self.num_entity_types or Ft != self.txn_features:  # static sizes: no graph op
            raise ValueError("inputs have " + str(E) + " entity types and " + str(Ft) + " transaction "
                             "features, the model " + str(self.num_entity_types) + " and " + str(self.txn_features))
        H = self.hidden
        n2 = B * E * K  # hop-2 transactions, flattened (b, e, k)
        # A masked slot's scaled features are no longer zero, but its edge still goes to the sink.
        target_x = (target_x - self.target_shift) * self.target_scale
        txn2_x = (txn2_x - self.txn_shift) * self.txn_scale
        ent1_x = (ent1_x - self.ent_shift) * self.ent_scale
        ent3_x = (ent3_x - self.ent_shift) * self.ent_scale

        # hop 3 -> hop 2: for each entity type f, each transaction has at most one such entity.
        x2 = _with_sink(txn2_x.reshape(n2, Ft))
        ent3 = ent3_x.reshape(n2, E, Fe)
        m3 = ent3_mask.reshape(n2, E)
        h2 = x2.new_zeros(n2 + 1, H)
        for f, conv in enumerate(self.ent_to_txn):
            edges = _star_edges(n2, 1, m3[:, f])
            h2 = h2 + conv((ent3[:, f], x2), edges)
        h2 = F.dropout(F.relu(h2[:n2]), self.dropout, self.training)

        # hop 2 -> hop 1: entity e of the target aggregates its K sampled transactions.
        h2 = h2.reshape(B, E, K, H)
        m2 = txn2_mask.reshape(B, E, K)
        h1: List[Tensor] = []
        for e, conv in enumerate(self.txn_to_ent):
            edges = _star_edges(B, K, m2[:, e])
            out = conv((h2[:, e].reshape(B * K, H), _with_sink(ent1_x[:, e])), edges)
            h1.append(out[:B])
        h1_all = F.dropout(F.relu(torch.stack(h1, dim=1)), self.dropout, self.training)

        # hop 1 -> target: one edge per entity type, summed over types.
        x0 = _with_sink(target_x)
        h0 = x0.new_zeros(B + 1, H)
        for e, conv in enumerate(self.ent_to_target):
            edges = _star_edges(B, 1, ent1_mask[:, e])
            h0 = h0 + conv((h1_all[:, e], x0), edges)
        h0 = F.dropout(F.relu(h0[:B]), self.dropout, self.training)

        embedding = self.embed(h0)
        logit = self.head(F.relu(embedding)).reshape(B)
        return logit, embedding
