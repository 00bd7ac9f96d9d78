"""The GNN backend plugins: libfraud_torch.so ("torchscript", "aoti") through _core.GnnModel.

Parity against torch eager on a tiny model with the contract's signature (masked means + Linear;
the real model is python/libfraud/models/gnn.py), within 1e-5 in float32, for several (entity types
E, transaction features Ft); the plugin's error statuses, and its refusal of inputs of another
shape; and libfraud.so never needing libtorch. Skips when torch or the plugin is not built.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed: no torch GNN backend to test")
from torch import nn  # noqa: E402

from libfraud import _core  # noqa: E402

LIBDIR = Path(_core.__file__).parent / "lib"
PLUGIN = LIBDIR / "libfraud_torch.so"
if not PLUGIN.exists():
    pytest.skip(f"{PLUGIN} not built (LIBFRAUD_WITH_TORCH=OFF, or no torch at build time)",
                allow_module_level=True)

K, D, H = 3, 8, 16
# (E, Ft): today's 4 entity types and 5 transaction features, then generic neighbourhoods.
SHAPES = [(4, 5), (1, 4), (2, 6), (7, 4)]
TOL = 1e-5  # float32, absolute
NAMES = ("target_x", "ent1_x", "ent1_mask", "txn2_x", "txn2_mask", "ent3_x", "ent3_mask")


def _masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    m = mask.unsqueeze(-1)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1.0)


class TinyGnn(nn.Module):
    """Bottom-up masked means with a Linear per hop: the contract's inputs and outputs."""

    def __init__(self, E: int, Ft: int) -> None:
        super().__init__()
        Fe = E + 1
        self.hop2 = nn.Linear(Ft + Fe, H)
        self.hop1 = nn.Linear(Fe + H, H)
        self.out = nn.Linear(Ft + H, D)
        self.head = nn.Linear(D, 1)

    def forward(self, target_x: torch.Tensor, ent1_x: torch.Tensor, ent1_mask: torch.Tensor,
                txn2_x: torch.Tensor, txn2_mask: torch.Tensor, ent3_x: torch.Tensor,
                ent3_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ent3 = _masked_mean(ent3_x, ent3_mask, 3)                             # [B,E,K,Fe]
        txn2 = torch.relu(self.hop2(torch.cat([txn2_x, ent3], -1)))          # [B,E,K,H]
        ent1 = torch.relu(self.hop1(torch.cat([ent1_x, _masked_mean(txn2, txn2_mask, 2)], -1)))
        emb = torch.tanh(self.out(torch.cat([target_x, _masked_mean(ent1, ent1_mask, 1)], -1)))
        return self.head(emb).squeeze(-1), emb


def make_inputs(batch: int, seed: int, cold: bool = False, shape=SHAPES[0]) -> tuple[np.ndarray, ...]:
    """Random neighbourhood arrays for (E, Ft); masked slots are zero (the contract's padding)."""
    rng = np.random.default_rng(seed)
    E, Ft = shape
    Fe = E + 1

    def mask(*shape: int) -> np.ndarray:
        return np.zeros(shape, np.float32) if cold else (rng.random(shape) < 0.7).astype(np.float32)

    target_x = rng.normal(size=(batch, Ft)).astype(np.float32)
    ent1_mask = mask(batch, E)
    ent1_x = rng.normal(size=(batch, E, Fe)).astype(np.float32) * ent1_mask[..., None]
    txn2_mask = mask(batch, E, K) * ent1_mask[..., None]
    txn2_x = rng.normal(size=(batch, E, K, Ft)).astype(np.float32) * txn2_mask[..., None]
    ent3_mask = mask(batch, E, K, E) * txn2_mask[..., None]
    ent3_x = rng.normal(size=(batch, E, K, E, Fe)).astype(np.float32) * ent3_mask[..., None]
    return target_x, ent1_x, ent1_mask, txn2_x, txn2_mask, ent3_x, ent3_mask


@pytest.fixture(scope="session", params=SHAPES, ids=lambda s: f"E{s[0]}-Ft{s[1]}")
def shape(request) -> tuple[int, int]:
    return request.param


@pytest.fixture(scope="session")
def tiny_model(shape) -> TinyGnn:
    torch.manual_seed(3)
    return TinyGnn(*shape).eval()


def eager(model: TinyGnn, arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        logit, emb = model(*(torch.from_numpy(a) for a in arrays))
    return logit.numpy(), emb.numpy()


@pytest.fixture(scope="session")
def artifacts(tiny_model, shape, tmp_path_factory) -> dict[str, Path]:
    """The tiny model as TorchScript and as an AOTInductor .pt2 (compiled once per shape, ~10-20 s),
    with the shape metadata export/gnn.py's export_aoti writes (the plugin checks it)."""
    out = tmp_path_factory.mktemp("gnn_artifacts")
    example = tuple(torch.from_numpy(a) for a in make_inputs(4, seed=0, shape=shape))
    meta = {"libfraud.fanout": str(K), "libfraud.entity_types": str(shape[0]),
            "libfraud.txn_features": str(shape[1])}
    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes = {name: {0: batch} for name in NAMES}
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.13 deprecates TorchScript (FACTS.md) and Inductor's own imports script modules;
        # the plugin still runs TorchScript.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated",
                                category=DeprecationWarning)
        # torch 2.13's own compile path deep-copies a graph holding a deprecated LeafSpec.
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                category=FutureWarning)
        torch.jit.save(torch.jit.script(tiny_model), str(out / "model.pt"))
        program = torch.export.export(tiny_model, example, dynamic_shapes=shapes)
        torch._inductor.aoti_compile_and_package(program, package_path=str(out / "model.pt2"),
                                                 inductor_configs={"aot_inductor.metadata": meta})
    return {"torchscript": out / "model.pt", "aoti": out / "model.pt2"}


@pytest.fixture(scope="session", params=["torchscript", "aoti"])
def loaded(request, artifacts):
    return request.param, _core.GnnModel(request.param, str(artifacts[request.param]), D)


@pytest.mark.parametrize("batch", [1, 64])
def test_plugin_matches_eager(loaded, tiny_model, shape, batch):
    kind, model = loaded
    assert Path(model.plugin_path).resolve() == PLUGIN.resolve()
    arrays = make_inputs(batch, seed=batch, shape=shape)
    logits, emb = model.run(*arrays)
    assert logits.dtype == np.float32 and logits.shape == (batch,)
    assert emb.dtype == np.float32 and emb.shape == (batch, D)
    ref_logits, ref_emb = eager(tiny_model, arrays)
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=TOL, err_msg=kind)
    np.testing.assert_allclose(emb, ref_emb, rtol=0, atol=TOL, err_msg=kind)


def test_cold_start_rows(loaded, tiny_model, shape):
    kind, model = loaded
    arrays = make_inputs(16, seed=5, cold=True, shape=shape)
    logits, emb = model.run(*arrays)
    ref_logits, ref_emb = eager(tiny_model, arrays)
    assert np.isfinite(logits).all() and np.isfinite(emb).all()
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=TOL, err_msg=kind)
    np.testing.assert_allclose(emb, ref_emb, rtol=0, atol=TOL, err_msg=kind)


def test_the_plugin_loads_a_checked_sealed_copy(loaded, artifacts, tiny_model, shape, tmp_path):
    """With expected_sha256 (the manifest's, in a bundle) the plugin is given the sealed private
    copy (/proc/self/fd/N): the .pt2 zip or the TorchScript file loads from it, other bytes are
    refused, and the file changing after the load changes nothing served."""
    kind, _ = loaded
    path = tmp_path / artifacts[kind].name
    shutil.copyfile(artifacts[kind], path)
    model = _core.GnnModel(kind, str(path), D, expected_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    path.write_bytes(b"overwritten after the load")
    arrays = make_inputs(8, seed=9, shape=shape)
    for got, want in zip(model.run(*arrays), eager(tiny_model, arrays)):
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=kind)
    shutil.copyfile(artifacts[kind], path)
    with pytest.raises(_core.FraudError) as e:
        _core.GnnModel(kind, str(path), D, expected_sha256="0" * 64)
    assert e.value.status == "FRAUD_STATUS_BUNDLE_CHECKSUM"
    assert str(path) in str(e.value) and "altered after verification" in str(e.value)


def test_concurrent_runs_agree(loaded, shape):
    kind, model = loaded
    inputs = [make_inputs(b, seed=100 + i, shape=shape) for i, b in enumerate([1, 7, 64, 3] * 4)]
    expected = [model.run(*a) for a in inputs]

    def work(_: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return [model.run(*a) for a in inputs for _ in range(5)][::5]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(4)))
    for got in results:
        for (lg, em), (le, ee) in zip(got, expected):
            np.testing.assert_array_equal(lg, le, err_msg=kind)
            np.testing.assert_array_equal(em, ee, err_msg=kind)


def test_time_run_returns_one_duration_per_call(loaded, shape):
    _, model = loaded
    ns = model.time_run(*make_inputs(1, seed=1, shape=shape), repeats=10, warmup=2)
    assert ns.dtype == np.int64 and ns.shape == (10,) and (ns > 0).all()


def test_bad_array_is_named(loaded, shape):
    _, model = loaded
    E, Ft = shape
    arrays = list(make_inputs(2, seed=1, shape=shape))
    arrays[2] = arrays[2].astype(np.float64)
    with pytest.raises(ValueError, match="ent1_mask must be float32"):
        model.run(*arrays)
    arrays = list(make_inputs(2, seed=1, shape=shape))
    arrays[5] = arrays[5][:, :, :, :E - 1]
    with pytest.raises(ValueError, match=fr"ent3_x has shape \[2, {E}, 3, {E - 1}, {E + 1}\], "
                                         fr"expected \[2, {E}, 3, {E}, {E + 1}\]"):
        model.run(*arrays)
    arrays = list(make_inputs(2, seed=1, shape=shape))
    arrays[1] = arrays[1][:, :, :E]  # ent1_x [B, E, E+1]: the entity features must be E + 1
    with pytest.raises(ValueError, match=fr"ent1_x has shape \[2, {E}, {E}\], expected \[2, {E}, {E + 1}\]"):
        model.run(*arrays)


def test_inputs_of_another_shape_are_refused(loaded, shape):
    kind, model = loaded
    other = (3, 5) if shape != (3, 5) else (4, 5)
    with pytest.raises(_core.FraudError, match=f"GNN backend '{kind}' failed") as e:
        model.run(*make_inputs(2, seed=1, shape=other))
    assert e.value.status == "FRAUD_STATUS_INTERNAL"
    if kind == "aoti":  # the package would read out of bounds: the plugin checks its metadata
        assert (f"exported for fanout {K}, {shape[0]} entity types and {shape[1]} transaction features; "
                f"the inputs have {K}, {other[0]} and {other[1]}") in str(e.value)


@pytest.fixture
def some_artifact(tmp_path) -> Path:
    """A path for the checks that fail before any artifact is read."""
    path = tmp_path / "model.pt2"
    path.write_bytes(b"never read")
    return path


def test_missing_plugin_is_backend_unavailable(some_artifact, tmp_path):
    with pytest.raises(_core.FraudError, match=r"needs libfraud_torch\.so: not found in .*LIBFRAUD_WITH_TORCH=ON") as e:
        _core.GnnModel("aoti", str(some_artifact), D, plugin_dir=str(tmp_path))
    assert e.value.status == "FRAUD_STATUS_BACKEND_UNAVAILABLE"
    assert str(tmp_path) in str(e.value)
    # The default search (beside the core) has no TensorRT plugin in this build.
    with pytest.raises(_core.FraudError, match=r"needs libfraud_tensorrt\.so: not found") as e:
        _core.GnnModel("tensorrt", str(some_artifact), D)
    assert e.value.status == "FRAUD_STATUS_BACKEND_UNAVAILABLE"


def test_unknown_kind_lists_the_known_ones(some_artifact):
    with pytest.raises(_core.FraudError, match="unknown GNN backend kind 'tflite'; known: torchscript, aoti") as e:
        _core.GnnModel("tflite", str(some_artifact), D)
    assert e.value.status == "FRAUD_STATUS_INVALID_ARGUMENT"


def test_plugin_without_libtorch_names_the_missing_library(tmp_path):
    """A plugin outside the wheel layout cannot find libtorch: dlerror's text, in a fresh process
    (in this one, torch is imported and its libraries are already loaded)."""
    (tmp_path / "lib").mkdir()
    shutil.copy2(PLUGIN, tmp_path / "lib" / PLUGIN.name)
    code = (
        "import sys\nfrom libfraud import _core\n"
        "try:\n"
        f"    _core.GnnModel('torchscript', 'x.pt', 8, plugin_dir={str(tmp_path / 'lib')!r})\n"
        "except _core.FraudError as e:\n"
        "    print(e.status); print(e)\n"
        "assert 'torch' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    status, message = out.stdout.split("\n", 1)
    assert status == "FRAUD_STATUS_BACKEND_UNAVAILABLE"
    assert "cannot be loaded" in message
    assert "libtorch_cpu.so" in message or "libc10.so" in message, message


@pytest.mark.parametrize("kind", ["torchscript", "aoti"])
def test_corrupt_artifact_is_load_error(kind, tmp_path):
    path = tmp_path / ("model.pt" if kind == "torchscript" else "model.pt2")
    path.write_bytes(b"PK\x03\x04 definitely not a model" * 10)
    with pytest.raises(_core.FraudError, match=f"GNN backend '{kind}' cannot load") as e:
        _core.GnnModel(kind, str(path), D)
    assert e.value.status == "FRAUD_STATUS_LOAD_ERROR"


def _dynamic_section(path: Path) -> str:
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf (binutils) not installed")
    return subprocess.run([readelf, "-dW", str(path)], capture_output=True, text=True, check=True).stdout


def test_libfraud_does_not_need_libtorch():
    needed = [ln for ln in _dynamic_section(LIBDIR / "libfraud.so").splitlines() if "(NEEDED)" in ln]
    assert needed and not [ln for ln in needed if "torch" in ln or "c10" in ln], needed


def test_plugin_layout():
    """RUNPATH into the wheel's torch (never a copy of libtorch), one exported symbol."""
    dyn = _dynamic_section(PLUGIN)
    assert "(RUNPATH)" in dyn and "$ORIGIN/../../torch/lib" in dyn
    assert not list(LIBDIR.glob("libtorch*")) and not list(LIBDIR.glob("libc10*"))
    nm = shutil.which("nm")
    if nm is not None:
        out = subprocess.run([nm, "-D", "--defined-only", str(PLUGIN)], capture_output=True, text=True,
                             check=True).stdout
        assert [ln.split()[-1] for ln in out.splitlines() if ln.strip()] == ["fraud_gnn_backend_v1"]


def test_missing_cpu_flags():
    assert _core.missing_cpu_flags(["avx2"]) == []
    assert _core.missing_cpu_flags(["avx2", "definitely_not_a_flag"]) == ["definitely_not_a_flag"]
    assert _core.missing_cpu_flags([]) == []
