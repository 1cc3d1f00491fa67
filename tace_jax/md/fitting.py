"""Fitting a parameter so that a trajectory average matches a target.

Two gradients of a canonical average ``⟨O⟩_θ`` with respect to a parameter ``θ`` of the
potential (any pytree; ``make_variables(θ)`` gives the model variables, e.g. a scale on the
Morse depth, the ZBL strength or a network weight):

* **direct** (:func:`direct_average`): ``⟨O⟩`` is the time average of one
  :func:`~tace_jax.md.rollout.rollout` (fixed initial state and Langevin noise key, so it is a
  deterministic, smooth function of ``θ``) and ``jax.grad`` differentiates through all steps
  (checkpointed, O(√steps) memory).
* **reweighting** (DiffTRe, Thaler & Zavadlav, Nat. Commun. 12, 6884 (2021)): a reference
  trajectory is sampled once at ``θ̂`` (:func:`sample_reference`); its frames ``xᵢ`` are
  reweighted to ``θ`` with ``wᵢ ∝ exp(−β[U_θ(xᵢ) − U_θ̂(xᵢ)])`` (:func:`reweighted_average`),
  valid while the effective sample size ``(Σw)²/(n·Σw²)`` stays close to 1. At ``θ = θ̂`` its
  gradient is ``⟨∂O/∂θ⟩ − β·Cov(O, ∂U/∂θ)`` (:func:`covariance_gradient`), which needs no
  backpropagation through the dynamics.

Both estimate ``d⟨O⟩/dθ`` of the canonical ensemble; they agree within the statistical error
of the trajectory, and each equals the finite difference of its own estimator to round-off
(tests/md/test_md_fitting.py, ``benchmarks/fit_observable.py``). :func:`fit_observable` runs a
damped Gauss–Newton loop with either method. The energy is the model energy of
arXiv 2509.14961 (docs/theory.md §2.9, §3); observables are those of :mod:`tace_jax.md.observables`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from ase import units

from tace_jax.inference.jax_md import MDSystem

from .config import md_config
from .observables import time_average
from .rollout import _bound_system, rollout

__all__ = [
    "FitResult",
    "Reference",
    "covariance_gradient",
    "direct_average",
    "fit_observable",
    "potential_energy",
    "reweighted_average",
    "sample_reference",
]

#: ``observable(state, neighbor, energy_fn, box) -> scalar``: the signature of a rollout's
#: ``observe``. It must compute from ``state.position`` / ``state.momentum`` and
#: ``energy_fn`` (not from cached forces), so that reweighting re-evaluates it at ``θ``.
Observable = Callable[..., jax.Array]


def potential_energy(state, neighbor, energy_fn, box) -> jax.Array:
    """The potential energy (eV) of ``state`` under ``energy_fn`` (an :data:`Observable`)."""
    return energy_fn(state.position, neighbor=neighbor)


def direct_average(
    system: MDSystem,
    nbrs,
    state,
    steps: int,
    observable: Observable,
    *,
    variables=None,
    discard: int = 0,
    ensemble: str = "langevin",
    checkpoint_every: int | None = None,
    key=None,
    config=None,
    **overrides,
) -> jax.Array:
    """Time average of ``observable`` over a rollout, differentiable w.r.t. ``variables``.

    Args:
        system, nbrs, state, steps, ensemble, checkpoint_every, key, config, overrides: as
            :func:`~tace_jax.md.rollout.rollout` (``state`` a ``(positions, momenta)`` pair or
            an integrator state).
        observable: ``observable(state, neighbor, energy_fn, box) -> scalar``.
        variables: model variables (traced to differentiate).
        discard: equilibration steps left out of the average.
    """
    if discard >= steps:
        raise ValueError(f"direct_average: discard={discard} leaves no step of {steps}")
    obs_fn = lambda st, nb, efn, box: {"o": observable(st, nb, efn, box)}
    _, out = rollout(
        system,
        nbrs,
        state,
        steps,
        ensemble,
        checkpoint_every,
        key=key,
        variables=variables,
        observe=obs_fn,
        config=config,
        **overrides,
    )
    return time_average(out["o"], discard=discard)


@flax.struct.dataclass
class Reference:
    """Frames of a reference trajectory at ``variables`` (for :func:`reweighted_average`).

    Attributes:
        states: integrator states stacked over the ``n`` kept frames (leading axis).
        neighbors: the neighbour lists of those frames (stacked).
        energies: ``[n]`` potential energies at the reference parameters (eV).
        kT: eV (0-d array), the thermostat temperature of the trajectory.
        variables: the reference model variables.
    """

    states: Any
    neighbors: Any
    energies: jax.Array
    kT: jax.Array
    variables: Any

    @property
    def num_frames(self) -> int:
        return int(self.energies.shape[0])


def _sampler(system, nbrs, steps, discard, every, cfg, key):
    """A jitted ``(variables, state) -> Reference`` (compiled once, reused by the fit loop)."""
    if cfg.canonical_ensemble not in ("nvt_langevin", "nvt_nose_hoover"):
        raise ValueError(
            f"sample_reference: {cfg.ensemble!r} is not canonical; use 'langevin' or 'nose_hoover'"
        )
    if discard >= steps:
        raise ValueError(f"sample_reference: discard={discard} leaves no frame of {steps}")
    kT = float(cfg.temperature) * units.kB

    def keep(st, nb, efn, box):
        return {"state": st, "nb": nb, "u": efn(st.position, neighbor=nb)}

    @jax.jit
    def run(variables, state):
        _, out = rollout(
            system, nbrs, state, steps, cfg.ensemble, key=key, variables=variables,
            observe=keep, config=cfg,
        )  # fmt: skip
        pick = lambda x: x[discard::every]
        return Reference(
            states=jax.tree_util.tree_map(pick, out["state"]),
            neighbors=jax.tree_util.tree_map(pick, out["nb"]),
            energies=pick(out["u"]),
            kT=jnp.asarray(kT, system.parts.dtype),
            variables=variables,
        )

    return run


def sample_reference(
    system: MDSystem,
    nbrs,
    state,
    steps: int,
    *,
    variables=None,
    discard: int = 0,
    every: int = 1,
    ensemble: str = "langevin",
    key=None,
    config=None,
    **overrides,
) -> Reference:
    """Run a reference NVT trajectory and keep every ``every``-th frame after ``discard``.

    Arguments as :func:`direct_average`; ``ensemble`` must sample the canonical ensemble
    (``"langevin"`` or ``"nose_hoover"``), whose temperature gives the ``β`` of the weights.
    """
    cfg = md_config(config, ensemble=ensemble, **overrides)
    variables = system.parts.variables if variables is None else variables
    return _sampler(system, nbrs, steps, discard, every, cfg, key)(variables, state)


def _per_frame(system: MDSystem, variables, reference: Reference, observable: Observable):
    """``(U_θ(xᵢ), O_θ(xᵢ))`` over the reference frames, ``[n]`` each."""
    bound, _, box = _bound_system(system, variables, None)
    efn = bound.energy_fn

    def one(st, nb):
        return efn(st.position, neighbor=nb), observable(st, nb, efn, box)

    return jax.vmap(one)(reference.states, reference.neighbors)


def reweighted_average(
    system: MDSystem, variables, reference: Reference, observable: Observable
) -> tuple[jax.Array, jax.Array]:
    """DiffTRe estimate of ``⟨O⟩`` at ``variables`` from the frames of ``reference``.

    ``⟨O⟩_θ ≈ Σᵢ wᵢ O_θ(xᵢ)`` with ``wᵢ = softmax(−β[U_θ(xᵢ) − U_θ̂(xᵢ)])``; differentiable
    w.r.t. ``variables`` (no backpropagation through the dynamics).

    Returns:
        ``(average, ess)``: the estimate and the effective sample size fraction
        ``1/(n·Σwᵢ²)`` in ``(0, 1]`` (1 at the reference; resample below ~0.5–0.9).
    """
    u, o = _per_frame(system, variables, reference, observable)
    w = jax.nn.softmax(-(u - reference.energies) / reference.kT)
    ess = 1.0 / (w.shape[0] * jnp.sum(w * w))
    return jnp.sum(w * o), ess


def covariance_gradient(
    system: MDSystem,
    theta,
    make_variables: Callable,
    reference: Reference,
    observable: Observable,
):
    """``d⟨O⟩/dθ = ⟨∂O/∂θ⟩ − β·Cov(O, ∂U/∂θ)`` over the reference frames (the DiffTRe
    gradient at ``θ = θ̂``; ``reference`` must have been sampled at ``make_variables(theta)``).

    One reverse pass: the gradient of ``mean(O_θ) − β·mean(sg(O − Ō)·U_θ)`` with the
    centred ``O`` held constant (``sg``: stop-gradient). Returns a pytree like ``theta``.
    """

    def surrogate(th):
        u, o = _per_frame(system, make_variables(th), reference, observable)
        oc = jax.lax.stop_gradient(o - jnp.mean(o))
        return jnp.mean(o) - jnp.mean(oc * u) / reference.kT

    return jax.grad(surrogate)(theta)


@dataclasses.dataclass
class FitResult:
    """Outcome of :func:`fit_observable`.

    Attributes:
        theta: the fitted parameter.
        value: ``⟨O⟩`` at ``theta`` (the method's own estimate).
        converged: ``|value − target| <= tol``.
        history: per iteration ``{"theta", "value", "grad", "ess", "resampled"}``.
        references: number of reference trajectories sampled (DiffTRe; 0 for direct).
    """

    theta: Any
    value: float
    converged: bool
    history: list = dataclasses.field(default_factory=list)
    references: int = 0


def fit_observable(
    system: MDSystem,
    nbrs,
    state,
    steps: int,
    observable: Observable,
    target: float,
    theta0,
    make_variables: Callable,
    *,
    method: str = "direct",
    iterations: int = 10,
    tol: float = 1e-3,
    damping: float = 1.0,
    discard: int = 0,
    every: int = 1,
    ess_min: float = 0.6,
    ensemble: str = "langevin",
    key=None,
    config=None,
    **overrides,
) -> FitResult:
    """Adjust ``θ`` so that ``⟨O⟩_θ`` matches ``target`` (damped Gauss–Newton).

    Each iteration takes ``θ ← θ − damping·(⟨O⟩ − target)·g/‖g‖²`` with ``g = d⟨O⟩/dθ``
    (the minimum-norm Newton step of one scalar equation; for a scalar ``θ`` the secant
    root-finder). ``method="direct"`` computes ``⟨O⟩`` and ``g`` by differentiating the rollout;
    ``"difftre"`` reweights a reference trajectory, sampling a new one (same initial state and
    key) whenever the effective sample size drops below ``ess_min``.

    Args:
        system, nbrs, state, steps, ensemble, key, config, overrides: the trajectory (as
            :func:`direct_average`); ``discard`` equilibration steps; ``every`` frame stride
            of the DiffTRe reference.
        observable: ``observable(state, neighbor, energy_fn, box) -> scalar``.
        target: the wanted average.
        theta0: initial parameter (pytree); ``make_variables(theta)`` -> model variables.
        method: ``"direct"`` or ``"difftre"``.
        iterations: maximum number of updates; tol: absolute tolerance on ``⟨O⟩ − target``.
        damping: step fraction in ``(0, 1]``; ess_min: DiffTRe resampling threshold.
    """
    if method not in ("direct", "difftre"):
        raise ValueError(f"fit_observable: method must be 'direct' or 'difftre', got {method!r}")
    kw = dict(ensemble=ensemble, key=key, config=config, **overrides)
    tree = jax.tree_util
    theta = tree.tree_map(jnp.asarray, theta0)
    result = FitResult(theta=theta, value=float("nan"), converged=False)

    if method == "direct":
        avg = lambda th: direct_average(
            system, nbrs, state, steps, observable, variables=make_variables(th),
            discard=discard, **kw
        )  # fmt: skip
        value_grad = jax.jit(jax.value_and_grad(avg))
    else:
        ref = None
        cfg = md_config(config, ensemble=ensemble, **overrides)
        sample = _sampler(system, nbrs, steps, discard, every, cfg, key)
        rw = lambda th, r: reweighted_average(system, make_variables(th), r, observable)
        rw_grad = jax.jit(jax.value_and_grad(rw, has_aux=True))

    for it in range(iterations + 1):
        resampled, ess = False, 1.0
        if method == "direct":
            value, g = value_grad(theta)
        else:
            if ref is not None:
                (value, ess), g = rw_grad(theta, ref)
            if ref is None or float(ess) < ess_min:
                ref = sample(make_variables(theta), state)
                resampled = True
                result.references += 1
                (value, ess), g = rw_grad(theta, ref)
        value = float(value)
        result.history.append(
            {"theta": theta, "value": value, "grad": g, "ess": float(ess), "resampled": resampled}
        )
        result.theta, result.value = theta, value
        if abs(value - target) <= tol:
            result.converged = True
            break
        if it == iterations:
            break
        gg = sum(float(jnp.vdot(x, x)) for x in tree.tree_leaves(g))
        if gg == 0.0:
            raise FloatingPointError("fit_observable: d<O>/dθ is zero; θ cannot be fitted")
        scale = damping * (value - target) / gg
        theta = tree.tree_map(lambda t, d, c=scale: t - c * d, theta, g)
    return result
