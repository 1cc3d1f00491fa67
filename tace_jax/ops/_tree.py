"""Pytree utilities shared by every layer (the one ``cast_floats``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["cast_floats"]


def cast_floats(tree, dtype, copy: bool = False):
    """Cast every floating-point leaf of ``tree`` to ``dtype``; other leaves are kept.

    Args:
        tree: any pytree of arrays (numpy or jax).
        dtype: the target floating dtype.
        copy: always return fresh device buffers (needed when the result may be donated to
            a jitted step while the input is still used).
    """
    dtype = jnp.dtype(dtype)

    def cast(x):
        x = jnp.asarray(x)
        target = dtype if jnp.issubdtype(x.dtype, jnp.floating) else x.dtype
        return jnp.array(x, dtype=target, copy=True) if copy else x.astype(target)

    return jax.tree.map(cast, tree)
