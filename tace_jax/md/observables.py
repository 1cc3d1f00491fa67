"""Differentiable trajectory observables: radial distribution function with smooth (Gaussian)
binning, mean-square displacement, pressure, the dipole autocorrelation (point-charge dipole
``Σ qᵢ rᵢ``) and time averages.

All are pure ``jnp`` functions of positions (and a box), so they can be used inside the
``observe`` callback of :func:`~tace_jax.md.rollout.rollout` or on its stacked output, and
differentiated with the rollout. Boxes follow jax-md: lattice vectors as columns.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tace_jax.inference.jax_md import pressure_fn

__all__ = [
    "autocorrelation",
    "dipole",
    "dipole_autocorrelation",
    "kinetic_energy",
    "msd",
    "pressure",
    "rdf",
    "time_average",
    "unwrap",
]


def kinetic_energy(momenta, masses) -> jax.Array:
    """``Σ p²/2m`` (eV) of ``[N, 3]`` momenta and ``[N]`` (or ``[N, 1]``) masses."""
    m = jnp.reshape(jnp.asarray(masses), (-1, 1))
    return 0.5 * jnp.sum(jnp.asarray(momenta) ** 2 / m)


def pressure(energy_fn, positions, neighbor, box, momenta=None, masses=None) -> jax.Array:
    """Pressure ``(2·KE − ∂E/∂ε)/(3V)`` (eV/Å³; divide by ``ase.units.GPa`` for GPa).

    Args:
        energy_fn: ``energy_fn(R, neighbor=..., box=..., perturbation=...)`` (the ``energy_fn``
            handed to a rollout's ``observe`` is bound to the rollout's strained box).
        positions: ``[N, 3]`` Å; neighbor: the list at ``positions``.
        box: jax-md box (columns), ``[3, 3]``; ``None`` is not allowed (no volume).
        momenta, masses: for the kinetic term (omit both for the virial part only).
    """
    if box is None:
        raise ValueError("pressure: a periodic box is required (columns, [3, 3])")
    ke = 0.0 if momenta is None else kinetic_energy(momenta, masses)
    return pressure_fn(energy_fn, positions, neighbor, box, ke)


def _min_image(d, box):
    if box is None:
        return d
    box = jnp.asarray(box, d.dtype)
    f = d @ jnp.linalg.inv(box).T
    f = f - jax.lax.stop_gradient(jnp.round(f))
    return f @ box.T


def rdf(positions, box, r_max: float, bins: int = 100, sigma: float | None = None):
    """Radial distribution function ``g(r)`` with Gaussian binning (differentiable).

    Each pair distance ``d`` adds a normalised Gaussian of width ``sigma`` (default: the bin
    width) centred at ``d``; ``g(r) = V/(N(N−1)) · Σ_{i≠j} G(r − dᵢⱼ) / (4πr²)``. Minimum
    image, so ``r_max`` must not exceed half the smallest cell width.

    Args:
        positions: ``[N, 3]`` or a trajectory ``[T, N, 3]`` (Å; averaged over frames).
        box: jax-md box (columns) ``[3, 3]``.
        r_max: Å; bins: number of bin centres in ``(0, r_max]``.
        sigma: Gaussian width (Å).

    Returns:
        ``(r, g)``: bin centres ``[bins]`` and ``g(r)`` ``[bins]``.
    """
    x = jnp.asarray(positions)
    if x.ndim == 2:
        x = x[None]
    if box is None:
        raise ValueError("rdf: a periodic box is required for the density normalisation")
    box = jnp.asarray(box, x.dtype)
    dr = r_max / bins
    r = (jnp.arange(bins, dtype=x.dtype) + 0.5) * dr
    s = dr if sigma is None else sigma
    n = x.shape[1]
    off = ~jnp.eye(n, dtype=bool)

    def frame(y):
        d = _min_image(y[:, None, :] - y[None, :, :], box)
        dist = jnp.sqrt(jnp.where(off[..., None], jnp.sum(d * d, -1, keepdims=True), 1.0))[..., 0]
        k = jnp.exp(-0.5 * ((r[:, None, None] - dist[None]) / s) ** 2) / (jnp.sqrt(2 * jnp.pi) * s)
        return jnp.sum(jnp.where(off[None], k, 0.0), axis=(1, 2))

    hist = jnp.mean(jax.vmap(frame)(x), axis=0)
    vol = jnp.abs(jnp.linalg.det(box))
    return r, vol * hist / (n * (n - 1) * 4.0 * jnp.pi * r**2)


def unwrap(trajectory, box=None):
    """Undo wrapping of a trajectory ``[T, N, 3]``: each frame-to-frame step is taken as its
    minimum image (valid while no atom moves half a cell between frames)."""
    x = jnp.asarray(trajectory)
    if box is None:
        return x
    steps = _min_image(x[1:] - x[:-1], box)
    return jnp.concatenate([x[:1], x[:1] + jnp.cumsum(steps, axis=0)])


def msd(trajectory, box=None, unwrapped: bool = False):
    """Mean-square displacement from the first frame, ``[T]`` (Å²).

    Args:
        trajectory: ``[T, N, 3]`` positions (e.g. stacked by a rollout's ``observe``).
        box: jax-md box; with it, wrapped positions are unwrapped first (:func:`unwrap`).
        unwrapped: the trajectory is already unwrapped (skip :func:`unwrap`).
    """
    x = jnp.asarray(trajectory) if unwrapped else unwrap(trajectory, box)
    return jnp.mean(jnp.sum((x - x[:1]) ** 2, axis=-1), axis=-1)


def time_average(values, discard: int = 0, weights=None):
    """Average over the leading (time) axis after ``discard`` frames of equilibration; with
    ``weights`` ``[T]`` (e.g. DiffTRe reweighting factors), the weighted average."""
    v = jnp.asarray(values)[discard:]
    if weights is None:
        return jnp.mean(v, axis=0)
    w = jnp.asarray(weights)[discard:]
    w = jnp.reshape(w / jnp.sum(w), (-1,) + (1,) * (v.ndim - 1))
    return jnp.sum(w * v, axis=0)


def dipole(positions, charges) -> jax.Array:
    """Point-charge dipole ``M = Σᵢ qᵢ rᵢ`` (e·Å), ``[..., 3]`` for positions ``[..., N, 3]``
    and charges ``[N]`` (or ``[..., N]``). Positions must be unwrapped (:func:`unwrap`) in a
    periodic cell, or the dipole jumps when an atom is wrapped."""
    x = jnp.asarray(positions)
    q = jnp.asarray(charges, x.dtype)
    return jnp.sum(q[..., None] * x, axis=-2)


def autocorrelation(values, max_lag: int | None = None, subtract_mean: bool = False):
    """Time autocorrelation ``C(τ) = ⟨a(t)·a(t+τ)⟩_t`` over the leading axis, ``[max_lag]``.

    Averages over the ``T − τ`` available origins (unbiased); trailing axes are contracted
    (a dot product for vectors). Computed with a zero-padded FFT (``O(T log T)``, differentiable).

    Args:
        values: ``[T]`` or ``[T, ...]``.
        max_lag: number of lags ``τ = 0 … max_lag−1`` (default ``T``).
        subtract_mean: correlate the fluctuations ``a − ⟨a⟩``.
    """
    a = jnp.asarray(values)
    t = a.shape[0]
    a = a.reshape(t, -1)
    if subtract_mean:
        a = a - jnp.mean(a, axis=0)
    lags = t if max_lag is None else int(max_lag)
    if not 1 <= lags <= t:
        raise ValueError(f"autocorrelation: max_lag must be in [1, {t}], got {max_lag}")
    n = 1 << (2 * t - 1).bit_length()
    f = jnp.fft.rfft(a, n=n, axis=0)
    c = jnp.fft.irfft(f * jnp.conj(f), n=n, axis=0)[:lags].sum(axis=-1)
    return c / (t - jnp.arange(lags)).astype(c.dtype)


def dipole_autocorrelation(
    trajectory,
    charges,
    box=None,
    max_lag: int | None = None,
    subtract_mean: bool = True,
    unwrapped: bool = False,
):
    """Dipole autocorrelation ``⟨δM(t)·δM(t+τ)⟩`` (e²Å², ``[max_lag]``) of a trajectory
    ``[T, N, 3]`` with fixed point charges ``[N]`` (the input of IR line shapes;
    docs/theory.md §3); wrapped trajectories are unwrapped first when ``box`` is given."""
    x = jnp.asarray(trajectory) if unwrapped else unwrap(trajectory, box)
    return autocorrelation(dipole(x, charges), max_lag, subtract_mean)
