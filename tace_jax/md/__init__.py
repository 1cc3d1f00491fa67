"""Molecular dynamics with jax-md: TACE energy functions, neighbour lists for any cell,
NVE / NVT / NPT runners with overflow recovery, batched replicas and differentiable rollouts."""

from .demo import run_md_demo as run_md_demo
from .differentiable import nve_rollout as nve_rollout
from .integrators import ENSEMBLES as ENSEMBLES
from .integrators import make_integrator as make_integrator
from .io import MDLogger as MDLogger
from .io import TrajectoryWriter as TrajectoryWriter
from .jax_md import MDSystem as MDSystem
from .jax_md import jax_md_functions as jax_md_functions
from .jax_md import md_system as md_system
from .jax_md import pressure_fn as pressure_fn
from .jax_md import stress_fn as stress_fn
from .neighbors import ImageNeighborList as ImageNeighborList
from .neighbors import make_neighbor_fns as make_neighbor_fns
from .runners import Simulation as Simulation
from .runners import initial_momenta as initial_momenta
from .runners import run_md as run_md
from .standin import MorsePotential as MorsePotential

__all__ = [
    "ENSEMBLES",
    "ImageNeighborList",
    "MDLogger",
    "MDSystem",
    "MorsePotential",
    "Simulation",
    "TrajectoryWriter",
    "initial_momenta",
    "jax_md_functions",
    "make_integrator",
    "make_neighbor_fns",
    "md_system",
    "nve_rollout",
    "pressure_fn",
    "run_md",
    "run_md_demo",
    "stress_fn",
]
