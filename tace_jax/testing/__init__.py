"""Test helpers and test doubles for the whole project (top layer: nothing in the package
imports it).

* equivariance, tree comparison and retracing checks (:mod:`._equivariance`);
* tiny model and training configurations (:mod:`.configs`);
* test doubles that satisfy the potential protocol of :mod:`tace_jax.inference`: a Morse pair
  potential for MD tests and a tiny analytic edge model for property tests.
"""

from ._equivariance import LAYOUTS as LAYOUTS
from ._equivariance import Rep as Rep
from ._equivariance import assert_equivariant as assert_equivariant
from ._equivariance import assert_max_traces as assert_max_traces
from ._equivariance import assert_no_recompile as assert_no_recompile
from ._equivariance import assert_trees_close as assert_trees_close
from ._equivariance import clear_trace_counter as clear_trace_counter
from ._equivariance import count_traces as count_traces
from ._equivariance import random_o3 as random_o3
from ._equivariance import rotate as rotate
from ._equivariance import rotate_tree as rotate_tree
from ._equivariance import wigner_cartesian as wigner_cartesian
from .configs import TINY_MODEL as TINY_MODEL
from .configs import tiny_model as tiny_model
from .configs import tiny_tace_config as tiny_tace_config
from .configs import tiny_train_dict as tiny_train_dict
from .morse import MorsePotential as MorsePotential
from .toy import toy_apply as toy_apply
from .toy import toy_init as toy_init

__all__ = [
    "LAYOUTS",
    "TINY_MODEL",
    "MorsePotential",
    "Rep",
    "assert_equivariant",
    "assert_max_traces",
    "assert_no_recompile",
    "assert_trees_close",
    "clear_trace_counter",
    "count_traces",
    "random_o3",
    "rotate",
    "rotate_tree",
    "tiny_model",
    "tiny_tace_config",
    "tiny_train_dict",
    "toy_apply",
    "toy_init",
    "wigner_cartesian",
]
