"""qamrec: query-aware, multi-modal movie recommendation on a heterogeneous graph."""

__version__ = "0.1.0"
__all__ = ["__version__"]
