"""Data: structures and readers, validation, splits, statistics, neighbour lists and batching.

See ``.notes/data_api.md`` for the overview. Internal units are eV, Å and e.
"""

from .atoms_graph import UnknownElementError as UnknownElementError
from .atoms_graph import atoms_to_graph_dict as atoms_to_graph_dict
from .atoms_graph import collate as collate
from .atoms_graph import graph_from_atoms as graph_from_atoms
from .batch import BATCH_LABELS as BATCH_LABELS
from .batch import BatchAssembler as BatchAssembler
from .batch import batch_structures as batch_structures
from .bundled import bundled_dataset_path as bundled_dataset_path
from .bundled import list_bundled_datasets as list_bundled_datasets
from .errors import DataError as DataError
from .graph import Graph as Graph
from .graph import budgets_for as budgets_for
from .graph import edge_vectors as edge_vectors
from .graph import pad_graph as pad_graph
from .loader import GraphLoader as GraphLoader
from .neighbor_cache import NeighborCache as NeighborCache
from .neighbors import NeighborListError as NeighborListError
from .neighbors import neighbor_list as neighbor_list
from .readers import DataKeys as DataKeys
from .readers import read_structures as read_structures
from .readers import structure_from_atoms as structure_from_atoms
from .readers import structure_to_atoms as structure_to_atoms
from .readers import validate_structures as validate_structures
from .splits import DataSplits as DataSplits
from .splits import load_splits as load_splits
from .splits import random_split as random_split
from .splits import read_indices as read_indices
from .splits import select as select
from .statistics import compute_statistics as compute_statistics
from .statistics import fit_atomic_energies as fit_atomic_energies
from .structure import LABELS as LABELS
from .structure import Structure as Structure
from .structure import stress_to_virials as stress_to_virials
from .structure import virials_to_stress as virials_to_stress
from .units import resolve_units as resolve_units

__all__ = [
    "LABELS",
    "BATCH_LABELS",
    "BatchAssembler",
    "DataError",
    "DataKeys",
    "DataSplits",
    "Graph",
    "GraphLoader",
    "NeighborCache",
    "NeighborListError",
    "Structure",
    "UnknownElementError",
    "atoms_to_graph_dict",
    "batch_structures",
    "budgets_for",
    "bundled_dataset_path",
    "collate",
    "compute_statistics",
    "edge_vectors",
    "fit_atomic_energies",
    "graph_from_atoms",
    "list_bundled_datasets",
    "load_splits",
    "neighbor_list",
    "pad_graph",
    "random_split",
    "read_indices",
    "read_structures",
    "resolve_units",
    "select",
    "stress_to_virials",
    "structure_from_atoms",
    "structure_to_atoms",
    "validate_structures",
    "virials_to_stress",
]
