"""`libfraud compile`: a trained model directory into a checked bundle. Trees go through
libfraud.export (Treelite -> TL2cgen -> cc); a GNN is exported to AOTInductor and TorchScript and
each artifact is checked through the C++ backend plugin that will serve it, against PyTorch."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .train import load_trained, load_trained_gnn

#: GNN artifacts a bundle carries, the first the default (AOTInductor is TorchScript's successor).
GNN_BACKENDS = ("aoti", "torchscript")


def export_gnn(model, arrays: dict, sampler: dict, workdir: Path,
               backends=GNN_BACKENDS, progress: bool = False) -> dict:
    """Export the GNN per backend, check each through the C++ plugin; the bundle's gnn section."""
    from . import _core
    from .export.gnn import check_gnn_parity, export_aoti, export_torchscript, require_gnn_parity
    from .models.gnn import INPUT_NAMES
    from .train_gnn import stacked_feature_names

    entries = []
    for kind in backends:
        if progress:
            print(f"    exporting the GNN: {kind}", flush=True)
        cpu_flags = None
        if kind == "aoti":
            example = {k: arrays[k][:2] for k in INPUT_NAMES}
            exported = export_aoti(model, workdir / "model.aoti.pt2", example)
            path, cpu_flags = exported.path, list(exported.isa_flags)
        elif kind == "torchscript":
            path = export_torchscript(model, workdir / "model.ts.pt")
        else:
            raise ValueError(f"unknown GNN backend {kind!r}; known: {GNN_BACKENDS}")
        served = _core.GnnModel(kind, str(path), model.embedding_dim)

        def run(*tensors, served=served):
            return served.run(*(np.ascontiguousarray(t.numpy(), dtype=np.float32) for t in tensors))

        report = require_gnn_parity(check_gnn_parity(model, run, arrays), f"GNN artifact ({kind})")
        report = {**report, "reference": f"pytorch eager vs C++ plugin ({served.plugin_path})",
                  "max_abs_diff": max(report["max_abs_diff_logit"], report["max_abs_diff_embedding"])}
        entries.append({"kind": kind, "path": str(path), "parity": report, "cpu_flags": cpu_flags})
    return {"sampler": dict(sampler), "embedding_dim": int(model.embedding_dim),
            "output_features": stacked_feature_names(model.embedding_dim),
            "default_backend": entries[0]["kind"], "backends": entries}


def compile_model_dir(model_dir: str | Path, out: str | Path, *, jobs: int = 2,
                      progress: bool = False) -> Path:
    from .export import build_bundle

    model, info, holdout = load_trained(model_dir)
    with tempfile.TemporaryDirectory(prefix="libfraud-gnn-") as work:
        gnn = None
        if "sampler" in info:
            gnn_model, arrays = load_trained_gnn(model_dir)
            gnn = export_gnn(gnn_model, arrays, info["sampler"], Path(work), progress=progress)
        return build_bundle(out, booster=model.booster, feature_names=list(model.feature_names),
                            feature_config=info["feature_config"], X_holdout=holdout,
                            threshold=info["threshold"], threshold_rule=info["threshold_rule"],
                            metrics=info["metrics"], gnn=gnn, jobs=jobs, progress=progress)
