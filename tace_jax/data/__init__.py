"""Graphs, neighbour lists and (later) datasets, statistics and batching."""

from .atoms_graph import UnknownElementError as UnknownElementError
from .atoms_graph import atoms_to_graph_dict as atoms_to_graph_dict
from .atoms_graph import collate as collate
from .atoms_graph import graph_from_atoms as graph_from_atoms
from .graph import Graph as Graph
from .graph import budgets_for as budgets_for
from .graph import edge_vectors as edge_vectors
from .graph import pad_graph as pad_graph
from .neighbors import NeighborListError as NeighborListError
from .neighbors import neighbor_list as neighbor_list
