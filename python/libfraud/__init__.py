"""libfraud: payment-fraud model compiler and C++ inference core.

The public surface: `Scorer` (a bundle served by the C++ core), `FraudError` (the core's errors,
with `.status`), the data, feature, model and export modules, and the paths a C program needs to
build against the installed library (`cmake_prefix_path`, `pkgconfig_path`, `include_dir`).
"""

from __future__ import annotations

from importlib import metadata as _metadata
from pathlib import Path as _Path

try:
    __version__ = _metadata.version("libfraud")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+dev"

_HERE = _Path(__file__).resolve().parent
#: For CMake: `-DCMAKE_PREFIX_PATH=<this>` then `find_package(libfraud)`.
cmake_prefix_path = str(_HERE)
#: For pkg-config: `PKG_CONFIG_PATH=<this> pkg-config --cflags --libs libfraud`.
pkgconfig_path = str(_HERE / "lib" / "pkgconfig")
include_dir = str(_HERE / "include")
library_path = str(_HERE / "lib" / "libfraud.so")

__all__ = ["FraudError", "Scorer", "cmake_prefix_path", "pkgconfig_path",
           "include_dir", "library_path", "__version__"]


def __getattr__(name: str):
    # Lazy, so the pure-Python modules import without the compiled core.
    if name == "Scorer":
        from .scorer import Scorer
        return Scorer
    if name == "FraudError":
        from ._core import FraudError
        return FraudError
    raise AttributeError(f"module 'libfraud' has no attribute {name!r}")
