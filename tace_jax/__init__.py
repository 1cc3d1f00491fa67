"""tace_jax: TACE (Tensor Atomic Cluster Expansion) in JAX/Flax.

A machine-learning interatomic potential built on irreducible Cartesian tensors. The curated
public API is re-exported here; implementation lives in the subpackages.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tace-jax")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
