"""The compiler: a trained model -> bundle artifacts (see BUNDLE.md), with parity checks."""

from .bundle import BundleError, build_bundle, read_manifest, verify_bundle
from .decision import check_decision
from .parity import ParityError, ParityReport, check_tree_parity
from .shap_tables import ShapTables, ShapTablesError, shap_tables
from .trees import CompileResult, TreeCompileError, compile_trees

__all__ = [
    "BundleError",
    "CompileResult",
    "ParityError",
    "ParityReport",
    "ShapTables",
    "ShapTablesError",
    "TreeCompileError",
    "build_bundle",
    "check_decision",
    "check_tree_parity",
    "compile_trees",
    "read_manifest",
    "shap_tables",
    "verify_bundle",
]
