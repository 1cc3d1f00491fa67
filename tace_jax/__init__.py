"""tace_jax: TACE (Tensor Atomic Cluster Expansion) in JAX/Flax.

A machine-learning interatomic potential built on irreducible Cartesian tensors. The curated
public API is re-exported here; implementation lives in the subpackages:

* :mod:`tace_jax.ops`: pure ICT algebra (STF bases, harmonics, ICTD, couplings);
* :mod:`tace_jax.nn`, :mod:`tace_jax.models`: Flax modules, the TACE model, ``Potential``;
* :mod:`tace_jax.properties`: forces, stress, virials, atomic virials, hessians by autodiff;
* :mod:`tace_jax.data`, :mod:`tace_jax.train`: datasets, batching, training, checkpoints;
* :mod:`tace_jax.md`, :mod:`tace_jax.vib`: jax-md dynamics, vibrational analysis;
* :mod:`tace_jax.testing`: equivariance and recompilation test helpers.

Nothing here changes global JAX state: float32 is the default, float64 is opt-in per call
(``jax.config.update("jax_enable_x64", True)`` must be set by the user for float64).
"""

from importlib.metadata import PackageNotFoundError, version

from . import ops as ops
from .calculator import TACECalculator as TACECalculator
from .data import Graph as Graph
from .data import graph_from_atoms as graph_from_atoms
from .data import read_structures as read_structures
from .inference import Potential as Potential
from .models import TACE as TACE
from .models import Statistics as Statistics
from .models import TACEConfig as TACEConfig
from .models import load_reference as load_reference
from .properties import compute_properties as compute_properties
from .train import fit as fit
from .train import load_config as load_config

try:
    __version__ = version("tace-jax")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+local"

__all__ = [
    "Graph",
    "Potential",
    "Statistics",
    "TACE",
    "TACECalculator",
    "TACEConfig",
    "__version__",
    "compute_properties",
    "fit",
    "graph_from_atoms",
    "load_config",
    "load_reference",
    "ops",
    "read_structures",
]
