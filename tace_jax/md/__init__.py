"""Molecular dynamics with jax-md: energy functions of any potential satisfying
:class:`~tace_jax.inference.protocol.PotentialProtocol` (model inputs such as an external field held
fixed), neighbour lists for any cell, NVE / NVT / NPT runners with overflow recovery, batched
replicas, health checks and differentiable rollouts, all configured by one :class:`MDConfig`."""

from tace_jax.inference.jax_md import MDSystem as MDSystem
from tace_jax.inference.jax_md import md_system as md_system
from tace_jax.inference.jax_md import pressure_fn as pressure_fn
from tace_jax.inference.jax_md import stress_fn as stress_fn
from tace_jax.inference.md_neighbors import ImageNeighborList as ImageNeighborList
from tace_jax.inference.md_neighbors import make_neighbor_fns as make_neighbor_fns
from tace_jax.inference.protocol import PotentialProtocol as PotentialProtocol

from . import observables as observables
from .config import ENSEMBLES as ENSEMBLES
from .config import MDConfig as MDConfig
from .differentiable import nve_rollout as nve_rollout
from .fitting import fit_observable as fit_observable
from .health import SimulationUnstable as SimulationUnstable
from .integrators import make_integrator as make_integrator
from .io import MDLogger as MDLogger
from .io import TrajectoryWriter as TrajectoryWriter
from .replicas import replica_batch as replica_batch
from .replicas import rollout_replicas as rollout_replicas
from .rollout import NeighborListOverflow as NeighborListOverflow
from .rollout import init_state as init_state
from .rollout import rollout as rollout
from .run import run_md as run_md
from .runners import Simulation as Simulation
from .runners import initial_momenta as initial_momenta

__all__ = [
    "ENSEMBLES",
    "ImageNeighborList",
    "MDConfig",
    "MDLogger",
    "MDSystem",
    "NeighborListOverflow",
    "PotentialProtocol",
    "Simulation",
    "SimulationUnstable",
    "TrajectoryWriter",
    "fit_observable",
    "init_state",
    "initial_momenta",
    "make_integrator",
    "make_neighbor_fns",
    "md_system",
    "nve_rollout",
    "observables",
    "pressure_fn",
    "replica_batch",
    "rollout",
    "rollout_replicas",
    "run_md",
    "stress_fn",
]
