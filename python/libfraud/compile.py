"""`libfraud compile`: a trained model directory into a checked bundle. Trees go through
libfraud.export (Treelite -> TL2cgen -> cc); a GNN is exported to AOTInductor and TorchScript and
each artifact is checked through the C++ backend plugin that will serve it, against PyTorch."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .train import load_drift_reference, load_trained, load_trained_gnn

#: GNN artifacts a bundle carries, fastest first: the first is the default the core tries first.
#: native: the dense form run by the core itself (no framework); AOTInductor and TorchScript
#: (deprecated upstream, kept for switches that deploy it) through the libtorch plugin.
GNN_BACKENDS = ("native", "aoti", "torchscript")


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
        if kind == "native":
            from .export.native import write_native
            path = workdir / "model.lfnative"
            write_native(model, path)
        elif kind == "aoti":
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


def export_onnx_artifacts(model, arrays: dict, workdir: Path, fanout: int, score_fp16=None,
                          y=None, progress: bool = False) -> list[dict]:
    """The dense form as ONNX, float32 and FP16, each checked in ONNX Runtime (CPU): artifacts a
    TensorRT machine builds engines from (the core does not serve them)."""
    from .export.gnn import check_gnn_parity, require_gnn_parity
    from .export.lower import lower
    from .export.onnx_export import (FP16_RELATIVE_TOLERANCE, convert_fp16, export_onnx, fp16_score_effect,
                                     onnx_runner)
    from .models.gnn import INPUT_NAMES

    if progress:
        print("    exporting the GNN: onnx (dense form), onnx-fp16", flush=True)
    dense = lower(model)
    fp32 = export_onnx(dense, workdir / "model.onnx", fanout)
    fp16 = convert_fp16(fp32.path, workdir / "model.fp16.onnx")
    out = []
    # ONNX Runtime's float32 kernels sum in another order than PyTorch's: on a trained model's larger
    # activations that alone moves outputs by ~1.5e-5, so both checks are relative to the outputs'
    # magnitude (1e-5 x max(1, |output|) for float32). The served backends keep 1e-5 absolute.
    for exported, tolerance in ((fp32, 1e-5), (fp16, FP16_RELATIVE_TOLERANCE)):
        report = require_gnn_parity(check_gnn_parity(model, onnx_runner(exported.path), arrays,
                                                     tolerance=tolerance, relative=True),
                                    f"ONNX ({exported.target})")
        report = {**report, "reference": "pytorch eager vs onnxruntime (CPU)",
                  "max_abs_diff": max(report["max_abs_diff_logit"], report["max_abs_diff_embedding"])}
        out.append({"target": exported.target, "path": str(exported.path), "parity": report,
                    "facts": {k: v for k, v in exported.manifest().items() if k not in ("path", "seconds")}})
    if y is not None and score_fp16 is not None and 0 < int(np.sum(y)) < len(y):
        inputs = [arrays[k] for k in INPUT_NAMES]
        effect = fp16_score_effect(y, onnx_runner(fp32.path)(*inputs), onnx_runner(fp16.path)(*inputs),
                                   score=score_fp16)
        out[1]["parity"]["score_effect"] = effect
    return out


def compile_model_dir(model_dir: str | Path, out: str | Path, *, jobs: int = 2,
                      progress: bool = False, track: bool = True, rules: str | Path | None = None,
                      review_from: float | None = None, decline_from: float | None = None) -> Path:
    """``rules`` (a rules.toml, python/libfraud/rules.py) and the bands ``review_from`` /
    ``decline_from`` become the bundle's `decision` section, checked by the core before anything
    is compiled (ValueError naming the file and the rule)."""
    from .export import build_bundle
    from .rules import check_rules, load_rules

    model, info, holdout = load_trained(model_dir)
    reference, reference_info = load_drift_reference(model_dir, info, holdout)
    decision = None
    if rules is not None or review_from is not None or decline_from is not None:
        decision = check_rules(load_rules(rules, review_from=review_from, decline_from=decline_from),
                               list(model.feature_names), info["schema"], info["threshold"],
                               rules if rules is not None else "--review-from/--decline-from")
    with tempfile.TemporaryDirectory(prefix="libfraud-gnn-") as work:
        gnn = None
        if "sampler" in info:
            gnn_model, saved = load_trained_gnn(model_dir)
            rows = saved.pop("holdout_rows")
            arrays = saved
            gnn = export_gnn(gnn_model, arrays, info["sampler"], Path(work), progress=progress)
            y = np.load(Path(model_dir) / "holdout_y.npy")[rows]
            base = holdout[rows].copy()

            def score_with_trees(gnn_outputs: np.ndarray) -> np.ndarray:
                # The shipped trees on each row's features with these GNN outputs in the last columns.
                rows_in = base.copy()
                rows_in[:, -gnn_outputs.shape[1]:] = gnn_outputs
                return model.booster.inplace_predict(rows_in)

            gnn["exports"] = export_onnx_artifacts(gnn_model, arrays, Path(work), info["sampler"]["fanout"],
                                                   score_fp16=score_with_trees, y=y, progress=progress)
        bundle = build_bundle(out, booster=model.booster, feature_names=list(model.feature_names),
                              schema=info["schema"], spec=info["spec"], X_holdout=holdout,
                              threshold=info["threshold"], threshold_rule=info["threshold_rule"],
                              metrics=info["metrics"], gnn=gnn, jobs=jobs, progress=progress,
                              calibration=info.get("calibration"), provenance=info.get("provenance"),
                              source=str(Path(model_dir) / "model.ubj"), decision=decision,
                              drift_reference=reference, drift_reference_info=reference_info)
    if track and info.get("mlflow"):  # the bundle joins the training run that made it
        from .tracking import log_to_run
        log_to_run(info["mlflow"]["uri"], info["mlflow"]["run_id"], artifacts={"bundle": bundle},
                   tags={"bundle": str(bundle)})
    return bundle
