"""GNN latency, batch 1, one thread: the torch plugin (libfraud_torch.so through _core.GnnModel,
timed in C++) against plain libtorch (bench/gnn_plain_libtorch.cpp: torch::jit::load /
AOTIModelPackageLoader called in a loop, no Python, no plugin). The issue's target: each plugin
path within 2x of plain libtorch at p50.

    python bench/gnn_latency.py                       # real FraudGnn if importable, fanout 10
    python bench/gnn_latency.py --model tiny --repeats 7 --calls 3000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# Pinned before torch loads its pools; glibc's malloc trimming otherwise makes AOTInductor latency
# jump between runs (FACTS.md, "Measuring"). Re-exec once so the process itself has them.
PINNED_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=268435456",
}
if any(os.environ.get(k) != v for k, v in PINNED_ENV.items()) and "_GNN_LATENCY_REEXEC" not in os.environ:
    os.execve(sys.executable, [sys.executable, *sys.argv],
              {**os.environ, **PINNED_ENV, "_GNN_LATENCY_REEXEC": "1"})

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from libfraud import _core  # noqa: E402

HERE = Path(__file__).resolve().parent
TS_DEPRECATION = r"`torch\.jit\.\w+` is deprecated"
LEAFSPEC_DEPRECATION = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


class TinyGnn(nn.Module):
    """The test model (tests/test_gnn_backend.py): masked means + Linear per hop."""

    def __init__(self, hidden: int = 16, embedding_dim: int = 8) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.hop2 = nn.Linear(10, hidden)
        self.hop1 = nn.Linear(5 + hidden, hidden)
        self.out = nn.Linear(5 + hidden, embedding_dim)
        self.head = nn.Linear(embedding_dim, 1)

    @staticmethod
    def _mean(x: torch.Tensor, m: torch.Tensor, dim: int) -> torch.Tensor:
        m = m.unsqueeze(-1)
        return (x * m).sum(dim) / m.sum(dim).clamp(min=1.0)

    def forward(self, target_x, ent1_x, ent1_mask, txn2_x, txn2_mask, ent3_x, ent3_mask):
        txn2 = torch.relu(self.hop2(torch.cat([txn2_x, self._mean(ent3_x, ent3_mask, 3)], -1)))
        ent1 = torch.relu(self.hop1(torch.cat([ent1_x, self._mean(txn2, txn2_mask, 2)], -1)))
        emb = torch.tanh(self.out(torch.cat([target_x, self._mean(ent1, ent1_mask, 1)], -1)))
        return self.head(emb).squeeze(-1), emb


def make_model(which: str) -> tuple[nn.Module, str]:
    torch.manual_seed(0)
    if which in ("auto", "real"):
        try:
            from libfraud.models.gnn import FraudGnn
            return FraudGnn().eval(), "libfraud.models.gnn.FraudGnn (default sizes, random weights)"
        except ImportError as e:
            if which == "real":
                raise
            print(f"real model not importable ({e}); using the test model", file=sys.stderr)
    return TinyGnn().eval(), "TinyGnn (tests/test_gnn_backend.py's model)"


def make_inputs(batch: int, fanout: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    E, K = 4, fanout
    m1 = (rng.random((batch, E)) < 0.8).astype(np.float32)
    m2 = (rng.random((batch, E, K)) < 0.7).astype(np.float32) * m1[..., None]
    m3 = (rng.random((batch, E, K, E)) < 0.8).astype(np.float32) * m2[..., None]
    x = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    return (x(batch, 5), x(batch, E, 5) * m1[..., None], m1, x(batch, E, K, 5) * m2[..., None], m2,
            x(batch, E, K, E, 5) * m3[..., None], m3)


def export(model: nn.Module, out: Path, fanout: int) -> dict[str, Path]:
    example = tuple(torch.from_numpy(a) for a in make_inputs(4, fanout, seed=1))
    batch = torch.export.Dim("batch", min=1, max=1024)
    paths = {"torchscript": out / "model.pt", "aoti": out / "model.pt2"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TS_DEPRECATION, category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=LEAFSPEC_DEPRECATION, category=FutureWarning)
        torch.jit.save(torch.jit.script(model), str(paths["torchscript"]))
        program = torch.export.export(model, example, dynamic_shapes=tuple({0: batch} for _ in example))
        torch._inductor.aoti_compile_and_package(program, package_path=str(paths["aoti"]))
    return paths


def build_plain(out: Path) -> Path:
    from torch.utils.cpp_extension import include_paths, library_paths
    src = HERE / "gnn_plain_libtorch.cpp"
    exe = out / "gnn_plain_libtorch"
    if exe.exists() and exe.stat().st_mtime > src.stat().st_mtime:
        return exe
    libdir = library_paths()[0]
    cmd = ["g++", "-O2", "-std=c++17", "-D_GLIBCXX_USE_CXX11_ABI=1", str(src), "-o", str(exe),
           *[f"-isystem{p}" for p in include_paths()], f"-L{libdir}", f"-Wl,-rpath,{libdir}",
           "-ltorch", "-ltorch_cpu", "-lc10"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    print(f"built {exe.name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return exe


def stats(ns: np.ndarray) -> tuple[float, float]:
    us = np.sort(ns) / 1e3
    rank = lambda q: us[max(0, int(np.ceil(q * len(us))) - 1)]  # noqa: E731  nearest rank
    return rank(0.50), rank(0.99)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["auto", "real", "tiny"], default="auto")
    ap.add_argument("--fanout", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calls", type=int, default=2000, help="timed calls per repeat and path")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--workdir", type=Path, default=Path("build/bench/gnn"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    model, model_name = make_model(args.model)
    t0 = time.perf_counter()
    paths = export(model, args.workdir, args.fanout)
    print(f"model: {model_name}; exported in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    exe = build_plain(args.workdir)

    arrays = make_inputs(1, args.fanout, seed=7)
    inputs_bin = args.workdir / "inputs.bin"
    inputs_bin.write_bytes(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays))
    with torch.no_grad():
        ref_logit = float(model(*(torch.from_numpy(a) for a in arrays))[0][0])
    D = int(getattr(model, "embedding_dim"))

    plugin = {k: _core.GnnModel(k, str(p), D) for k, p in paths.items()}
    per = {f"{k} {w}": [] for k in paths for w in ("plugin", "plain")}
    max_diff = 0.0
    for _ in range(args.repeats):
        for kind, path in paths.items():
            ns = plugin[kind].time_run(*arrays, repeats=args.calls, warmup=args.warmup)
            per[f"{kind} plugin"].append(stats(ns))
            max_diff = max(max_diff, abs(float(plugin[kind].run(*arrays)[0][0]) - ref_logit))
            with tempfile.NamedTemporaryFile(suffix=".bin") as f:
                r = subprocess.run([str(exe), kind, str(path), str(inputs_bin), str(args.fanout),
                                    str(args.calls), str(args.warmup), f.name],
                                   check=True, capture_output=True, text=True)
                per[f"{kind} plain"].append(stats(np.fromfile(f.name, dtype=np.int64)))
            max_diff = max(max_diff, abs(float(r.stdout) - ref_logit))

    rows = {name: (float(np.median([s[0] for s in v])), float(np.median([s[1] for s in v])))
            for name, v in per.items()}
    print(f"\nbatch 1, fanout {args.fanout}, one thread; {args.repeats} repeats x {args.calls} calls; "
          f"model: {model_name}")
    print(f"{'path':<22}{'p50 us':>10}{'p99 us':>10}{'x plain p50':>14}")
    for name, (p50, p99) in rows.items():
        kind = name.split()[0]
        ratio = p50 / rows[f"{kind} plain"][0]
        print(f"{name:<22}{p50:>10.1f}{p99:>10.1f}{ratio:>14.2f}")
    print(f"largest |logit - eager| over all paths: {max_diff:.2e}")
    if args.json:
        args.json.write_text(json.dumps({
            "model": model_name, "fanout": args.fanout, "repeats": args.repeats, "calls": args.calls,
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "us": {k: {"p50": v[0], "p99": v[1]} for k, v in rows.items()},
            "max_logit_diff": max_diff, "env": {k: os.environ.get(k) for k in PINNED_ENV},
        }, indent=2))


if __name__ == "__main__":
    main()
