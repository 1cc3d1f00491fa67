"""Test helpers for the whole project: random O(3) elements, tensor rotation, equivariance,
tree comparison and retracing checks.

Nothing here changes global JAX state; tests that need float64 enable ``jax_enable_x64``
themselves (the project's ``tests/conftest.py`` does it for the whole test run).

Conventions
-----------
A rank-``l`` tensor is stored in one of three layouts (see ``rotate``):

* ``"full"``: ``l`` trailing axes of size 3; ``R`` acts on each of them;
* ``"compressed"``: one trailing axis of size ``2l+1`` holding the coordinates in the STF basis
  ``Q_l = tace_jax.ops.stf_basis(l)``; ``R`` acts through ``D_l(R) = Q_lᵀ R^{⊗l} Q_l``
  (``wigner_cartesian``);
* ``"vector"``: rank 1 with a trailing axis of 3 (the same as ``"full"`` for rank 1); useful for
  positions, forces, lattice vectors (rows of a cell matrix), fields.

Rank 0 is invariant. ``R`` may be improper (``det R = −1``); ``R^{⊗l}`` then produces the
natural parity ``(−1)^l`` automatically. Axial (pseudo) tensors pick up an extra ``det R``
(``parity=-1``).

Example: equivariance of a whole model ``fn(positions, cell) -> {"energy", "forces", "stress"}``::

    assert_equivariant(
        fn, key, (positions, cell), in_ranks=(1, 1),
        out_ranks={"energy": 0, "forces": 1, "stress": 2}, atol=1e-10,
    )
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from tace_jax.ops import stf_basis

__all__ = [
    "Rep",
    "random_o3",
    "wigner_cartesian",
    "rotate",
    "rotate_tree",
    "assert_equivariant",
    "assert_trees_close",
    "assert_no_recompile",
    "count_traces",
    "assert_max_traces",
    "clear_trace_counter",
]

LAYOUTS = ("full", "compressed", "vector")

# Re-exports so project tests depend on ``tace_jax.testing`` only.
assert_max_traces = chex.assert_max_traces
clear_trace_counter = chex.clear_trace_counter


# --------------------------------------------------------------------------------------------
# Group elements and representations
# --------------------------------------------------------------------------------------------


def _is_traced(*xs: Any) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in xs)


def _random_o3(key: jax.Array, mode: jax.Array, dtype) -> jax.Array:
    kq, ks = jax.random.split(key)
    q = jax.random.normal(kq, (4,), dtype=dtype)
    w, x, y, z = q / jnp.linalg.norm(q)
    rot = jnp.stack(
        [
            jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)]),
            jnp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)]),
            jnp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]),
        ]
    )
    improper = jnp.where(mode < 0, jax.random.bernoulli(ks), mode > 0)
    return jnp.where(improper, -rot, rot)


_random_o3_jit = jax.jit(_random_o3, static_argnames=("dtype",))


@functools.partial(jax.jit, static_argnames=("dtype",))
def _random_o3_many(key: jax.Array, modes: jax.Array, dtype) -> jax.Array:
    """One element per entry of ``modes`` (``-1`` random, ``0`` proper, ``1`` improper)."""
    keys = jax.random.split(key, modes.shape[0] + 1)
    return jax.vmap(lambda k, m: _random_o3(k, m, dtype))(keys[1:], modes)


def random_o3(key: jax.Array, dtype=jnp.float64, inversion: bool | None = None) -> jax.Array:
    """A random orthogonal ``3×3`` matrix.

    The rotation part is Haar-distributed (a normalised Gaussian quaternion). With
    ``inversion=None`` it is multiplied by ``−1`` with probability ½; ``True``/``False`` force
    an improper/proper element. Traceable (works under ``jit``/``vmap`` over ``key``); one
    compilation per dtype.

    Args:
        key: a PRNG key.
        dtype: dtype of the result (``float64`` needs ``jax_enable_x64``).
        inversion: ``None`` (random), ``True`` (``det = −1``) or ``False`` (``det = +1``).
    """
    mode = -1 if inversion is None else int(bool(inversion))
    return _random_o3_jit(key, jnp.asarray(mode, jnp.int32), jnp.dtype(dtype))


def _apply_on_trailing_axes(x, rot, rank: int, xp=jnp):
    """``x'_{…a1…al} = R_{a1b1}…R_{albl} x_{…b1…bl}`` for the last ``rank`` axes."""
    if rank == 0:
        return x
    if x.ndim < rank or tuple(x.shape[x.ndim - rank :]) != (3,) * rank:
        raise ValueError(
            f"a full-layout rank-{rank} tensor must end in {rank} axes of 3, got {x.shape}"
        )
    for i in range(rank):
        axis = x.ndim - rank + i
        # contract axis `axis` of x with the second index of R, put the result back in place
        x = xp.moveaxis(xp.tensordot(x, rot, axes=([axis], [1])), -1, axis)
    return x


def _wigner(rot, l: int, xp):
    q = xp.asarray(stf_basis(l), dtype=rot.dtype)  # (3^l, 2l+1)
    if l == 0:
        return q
    qt = xp.moveaxis(q.reshape(*((3,) * l), 2 * l + 1), -1, 0)  # (2l+1, 3, …, 3)
    rq = _apply_on_trailing_axes(qt, rot, l, xp).reshape(2 * l + 1, 3**l)  # rows: R^{⊗l} Q e_β
    return (rq @ q).T  # D_{αβ} = (Q e_α)·(R^{⊗l} Q e_β)


def wigner_cartesian(rot: jax.Array, l: int) -> jax.Array:
    """``D_l(R) = Q_lᵀ R^{⊗l} Q_l``, the ``(2l+1)×(2l+1)`` matrix of ``R`` in the compressed layout.

    Orthogonal for any orthogonal ``R``; ``D_l(−R) = (−1)^l D_l(R)`` (natural parity); ``D_0 = 1``.
    Concrete inputs are evaluated in float64 numpy (no compilation); traced ones in ``jnp``.
    """
    if _is_traced(rot):
        return _wigner(rot, l, jnp)
    r = np.asarray(rot)
    return jnp.asarray(_wigner(r.astype(np.float64), l, np).astype(r.dtype))


def rotate(
    x: jax.Array, rot: jax.Array, rank: int, layout: str = "full", parity: int = 1
) -> jax.Array:
    """Apply the O(3) element ``rot`` to a rank-``rank`` tensor (with any leading axes).

    Concrete inputs are rotated in float64 numpy and cast back to ``x``'s dtype (no
    compilation, exact to float64 rounding); traced inputs (inside ``jit``/``vmap``) use ``jnp``.

    Args:
        x: ``[..., 3, …, 3]`` (``full``; ``rank`` axes), ``[..., 2·rank+1]`` (``compressed``) or
            ``[..., 3]`` (``vector``, rank 1 only).
        rot: a ``3×3`` orthogonal matrix (``random_o3``).
        rank: the tensor rank; 0 returns ``x`` unchanged (times ``det R`` for ``parity=-1``).
        layout: ``"full"``, ``"compressed"`` or ``"vector"``.
        parity: ``+1`` for natural-parity (polar) tensors, ``−1`` for axial tensors, which pick
            up an extra factor ``det R``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if parity not in (1, -1):
        raise ValueError(f"parity must be +1 or -1, got {parity!r}")
    if layout == "vector":
        if rank != 1:
            raise ValueError(f"layout 'vector' is for rank 1, got rank {rank}")
        layout = "full"
    traced = _is_traced(x, rot)
    xp = jnp if traced else np
    dtype = jnp.asarray(x).dtype
    if traced:
        x = jnp.asarray(x)
        rot = jnp.asarray(rot).astype(jnp.result_type(x, rot))
    else:
        x = np.asarray(x).astype(np.result_type(dtype, np.float64))
        rot = np.asarray(rot, dtype=np.float64)
    if rank == 0:
        out = x
    elif layout == "full":
        out = _apply_on_trailing_axes(x, rot, rank, xp)
    else:
        if x.ndim < 1 or x.shape[-1] != 2 * rank + 1:
            raise ValueError(
                f"a compressed rank-{rank} tensor must end in {2 * rank + 1}, got {x.shape}"
            )
        out = x @ _wigner(rot, rank, xp).T
    if parity == -1:
        out = out * xp.linalg.det(rot).astype(out.dtype)
    return out if traced else jnp.asarray(out.astype(dtype))


# --------------------------------------------------------------------------------------------
# Transformation specs and pytrees
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rep:
    """How a leaf (or a whole subtree) transforms under O(3).

    Attributes:
        rank: tensor rank (0: invariant).
        layout: ``"full"``, ``"compressed"`` or ``"vector"``; ``None`` takes the default layout
            of the call (``assert_equivariant(..., layout=...)``).
        parity: ``+1`` (polar, natural parity) or ``−1`` (axial).
    """

    rank: int
    layout: str | None = None
    parity: int = 1


def _is_spec(s: Any) -> bool:
    return s is None or isinstance(s, (int, Rep)) and not isinstance(s, bool)


def _as_rep(spec: Any, layout: str) -> Rep | None:
    """``None`` → untouched; ``int`` → ``Rep(int, layout)``; ``Rep`` with its layout defaulted."""
    if spec is None:
        return None
    if isinstance(spec, Rep):
        return dataclasses.replace(spec, layout=spec.layout or layout)
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 0:
            raise ValueError(f"rank must be non-negative, got {spec}")
        return Rep(spec, layout)
    raise TypeError(f"rank spec must be None, an int or a Rep, got {spec!r}")


def rotate_tree(tree: Any, rot: jax.Array, ranks: Any, layout: str = "full") -> Any:
    """Rotate every array leaf of ``tree``.

    ``ranks`` is a pytree prefix of ``tree`` whose leaves are ``None`` (leave the subtree
    untouched: invariant or non-geometric data), an ``int`` rank (in ``layout``) or a ``Rep``.
    A spec applies to every array leaf of the matching subtree.
    """

    def one(spec, sub):
        rep = _as_rep(spec, layout)
        if rep is None or rep.rank == 0 and rep.parity == 1:
            return sub
        return jax.tree_util.tree_map(
            lambda a: rotate(a, rot, rep.rank, rep.layout, rep.parity), sub
        )

    return jax.tree_util.tree_map(one, ranks, tree, is_leaf=_is_spec)


# --------------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------------


def _leaf_report(
    path: str, a: Any, b: Any, atol: float, rtol: float, check_dtypes: bool
) -> str | None:
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    if a_arr.shape != b_arr.shape:
        return f"{path}: shapes differ {a_arr.shape} vs {b_arr.shape}"
    if check_dtypes and a_arr.dtype != b_arr.dtype:
        return f"{path}: dtypes differ {a_arr.dtype} vs {b_arr.dtype}"
    if a_arr.size == 0:
        return None
    if not (np.issubdtype(a_arr.dtype, np.number) or a_arr.dtype == bool):
        return None if np.array_equal(a_arr, b_arr) else f"{path}: values differ"
    af = a_arr.astype(np.complex128 if np.iscomplexobj(a_arr) else np.float64)
    bf = b_arr.astype(np.complex128 if np.iscomplexobj(b_arr) else np.float64)
    nan_a, nan_b = np.isnan(af), np.isnan(bf)
    if (nan_a != nan_b).any():
        return f"{path}: NaN pattern differs ({nan_a.sum()} vs {nan_b.sum()} NaNs)"
    ok = ~nan_a
    with np.errstate(invalid="ignore"):
        err = np.where(ok, np.abs(af - bf), 0.0)
        tol = atol + rtol * np.where(ok, np.abs(bf), 0.0)
    same_inf = ok & np.isinf(af) & (af == bf)
    err = np.where(same_inf, 0.0, err)
    bad = err > tol
    if bad.any():
        idx = np.unravel_index(np.argmax(np.where(bad, err - tol, -np.inf)), err.shape)
        bmax = np.abs(bf[ok]).max() if ok.any() else 0.0
        return (
            f"{path}: {bad.sum()}/{err.size} entries differ; max |a-b| = {err.max():.3e} "
            f"(at {tuple(int(i) for i in idx)}: {af[idx]!r} vs {bf[idx]!r}; "
            f"atol={atol:g}, rtol={rtol:g}); max |b| = {bmax:.3e}"
        )
    return None


def assert_trees_close(
    a: Any,
    b: Any,
    atol: float = 1e-12,
    rtol: float = 0.0,
    check_dtypes: bool = False,
    msg: str = "",
) -> None:
    """Assert two pytrees have the same structure and ``|a − b| ≤ atol + rtol·|b|`` leafwise.

    NaNs must occur at the same places; infinities must match exactly. Raises ``AssertionError``
    naming every mismatching leaf by its key path.
    """
    leaves_a, tree_a = jax.tree_util.tree_flatten_with_path(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten_with_path(b)
    prefix = f"{msg}: " if msg else ""
    if tree_a != tree_b:
        raise AssertionError(f"{prefix}tree structures differ:\n  {tree_a}\n  {tree_b}")
    errors = []
    for (path, la), (_, lb) in zip(leaves_a, leaves_b):
        rep = _leaf_report(jax.tree_util.keystr(path) or "<root>", la, lb, atol, rtol, check_dtypes)
        if rep is not None:
            errors.append(rep)
    if errors:
        raise AssertionError(prefix + "trees are not close:\n  " + "\n  ".join(errors))


def _max_abs_diff(a: Any, b: Any) -> float:
    diffs = [
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)), initial=0.0))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    ]
    return max(diffs, default=0.0)


# --------------------------------------------------------------------------------------------
# Equivariance
# --------------------------------------------------------------------------------------------


def assert_equivariant(
    fn: Callable[..., Any],
    key: jax.Array,
    inputs: Any,
    in_ranks: Any,
    out_ranks: Any,
    layout: str = "full",
    atol: float = 1e-12,
    rtol: float = 0.0,
    n_trials: int = 3,
    dtype=None,
) -> float:
    """Check ``fn(g·x) == g·fn(x)`` for random ``g ∈ O(3)``.

    Trial 0 uses an improper element (rotation times inversion), trial 1 a proper rotation,
    later trials a random element of either kind, so any ``n_trials ≥ 2`` covers both.

    Args:
        fn: the function; it is called as ``fn(*inputs)`` (wrap keyword/static arguments with
            ``functools.partial``). Its output may be any pytree.
        key: PRNG key for the group elements.
        inputs: a ``tuple`` of positional arguments; anything else is the single argument.
        in_ranks: rank specs for ``inputs``, a pytree prefix of it (a ``tuple`` with one entry
            per argument when ``inputs`` is a tuple). Leaves are ``None`` (untouched: invariant
            or non-geometric, e.g. atomic numbers, masks, neighbour lists), an ``int`` rank in
            ``layout`` (0 is invariant too; rank-1 ``[..., 3]`` covers positions and lattice
            vectors), or a ``Rep(rank, layout, parity)``.
        out_ranks: rank specs for the output, a pytree prefix of it (e.g.
            ``{"energy": 0, "forces": 1, "stress": 2}`` or ``[0, 1, 2, 3]`` for a list of
            harmonics). ``None`` leaves are not checked.
        layout: default layout for ``int`` specs: ``"full"``, ``"compressed"`` or ``"vector"``.
        atol, rtol: tolerance ``|fn(g·x) − g·fn(x)| ≤ atol + rtol·|g·fn(x)|``.
        n_trials: number of group elements (≥ 1).
        dtype: dtype of the group elements; default: the widest floating dtype among the inputs
            (float32 if none).

    Returns:
        The largest absolute deviation seen (for reporting).

    Raises:
        AssertionError: naming the trial, whether it was improper, and the failing output leaves.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    arg_ranks = in_ranks if isinstance(inputs, tuple) else (in_ranks,)
    if not isinstance(arg_ranks, tuple) or len(arg_ranks) != len(args):
        raise ValueError(
            f"in_ranks must have one entry per positional argument ({len(args)}), got {in_ranks!r}"
        )
    if dtype is None:
        floats = [
            jnp.asarray(x).dtype
            for x in jax.tree_util.tree_leaves(args)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
        ]
        dtype = functools.reduce(jnp.promote_types, floats, jnp.float32)

    def checked_tree(spec_tree, tree):
        # keep only the leaves whose spec is not None (None = not checked)
        return jax.tree_util.tree_map(
            lambda s, sub: sub if s is not None else None, spec_tree, tree, is_leaf=_is_spec
        )

    out = fn(*args)
    worst = 0.0
    modes = np.full(n_trials, -1, np.int32)
    modes[:2] = [1, 0][:n_trials]
    rots = np.asarray(_random_o3_many(key, jnp.asarray(modes), jnp.dtype(dtype)))
    for trial in range(n_trials):
        rot = rots[trial]
        rot_args = tuple(rotate_tree(a, rot, r, layout) for a, r in zip(args, arg_ranks))
        got = fn(*rot_args)
        want = rotate_tree(out, rot, out_ranks, layout)
        got_c, want_c = checked_tree(out_ranks, got), checked_tree(out_ranks, want)
        kind = "improper (with inversion)" if np.linalg.det(rot) < 0 else "proper"
        assert_trees_close(
            got_c,
            want_c,
            atol=atol,
            rtol=rtol,
            msg=f"not equivariant in trial {trial} ({kind} element R={rot.tolist()})",
        )
        worst = max(worst, _max_abs_diff(got_c, want_c))
    return worst


# --------------------------------------------------------------------------------------------
# Retracing
# --------------------------------------------------------------------------------------------


def count_traces(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Python function so that ``wrapped.n_traces`` counts how often JAX traced it.

    Calls whose arguments contain tracers count; eager calls do not. Unlike
    ``chex.assert_max_traces`` the counter lives on the wrapper (no global state)::

        f = count_traces(step)
        jf = jax.jit(f)
        jf(x); jf(x + 1)
        assert f.n_traces == 1
    """

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        leaves = jax.tree_util.tree_leaves((args, kwargs))
        if any(isinstance(x, jax.core.Tracer) for x in leaves):
            wrapped.n_traces += 1
        return fn(*args, **kwargs)

    wrapped.n_traces = 0
    return wrapped


def assert_no_recompile(
    fn: Callable[..., Any],
    *arg_sets: Sequence[Any],
    max_traces: int = 1,
    **jit_kwargs: Any,
) -> list[Any]:
    """Jit ``fn`` and call it on each argument tuple; assert it was traced ≤ ``max_traces`` times.

    Args:
        fn: a Python function, or an already jitted one (it is wrapped in an outer ``jit``,
            which retraces exactly when the inner one would, static arguments aside).
        *arg_sets: tuples of positional arguments, e.g. the same shapes with different values,
            or different-size systems padded to the same shapes.
        max_traces: the allowed number of traces (1: everything shares one compilation).
        **jit_kwargs: passed to ``jax.jit`` (``static_argnums``, ``static_argnames``, …).

    Returns:
        The outputs, one per argument tuple.
    """
    if not arg_sets:
        raise ValueError("give at least one tuple of arguments")
    counted = count_traces(fn)
    jitted = jax.jit(counted, **jit_kwargs)
    outs = []
    for i, args in enumerate(arg_sets):
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"argument set {i} must be a tuple of positional arguments")
        outs.append(jax.block_until_ready(jitted(*args)))
        if counted.n_traces > max_traces:
            raise AssertionError(
                f"{getattr(fn, '__name__', fn)!s} was traced {counted.n_traces} times "
                f"(> {max_traces}) after argument set {i}; shapes/dtypes/static args changed: "
                f"{jax.tree_util.tree_map(lambda x: getattr(x, 'shape', x), args)}"
            )
    return outs
