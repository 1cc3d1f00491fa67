"""Chunked MD runs with neighbour-overflow recovery, logging and trajectories.

:class:`Simulation` integrates one structure, or several replicas of the same size (``vmap``),
in chunks of steps (``lax.scan`` inside ``jit``). Between chunks it checks the neighbour list's
overflow flag; on overflow it reallocates the list (outside ``jit``, sized for where the chunk
ended) and redoes the chunk from its start state, so no step ever runs with a truncated list.
The health checks of :mod:`tace_jax.md.health` run inside the chunk; on a failure the state
stops at the last healthy step and :class:`~tace_jax.md.health.SimulationUnstable` is raised.

A LES model (``potential.config.les``, docs/theory.md §4) runs on a static k-grid (initial cell
plus ``les_headroom``); under NPT a chunk tracks the grid its cells need: a cell within the grid
never recompiles, one that outgrows it regrows the grid (:func:`~tace_jax.models.les.ensure_kgrid`
logs "reallocating"), rebuilds the energy and redoes the chunk, like a list overflow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from ase import units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation

from tace_jax.inference._adapter import model_parts
from tace_jax.inference.jax_md import md_system, pressure_fn
from tace_jax.models.les import ensure_kgrid, grow_kgrid
from tace_jax.ops import ewald_kgrid

from .config import MDConfig, md_config
from .health import SimulationUnstable, health_limits, make_step_check, raise_unstable, reference
from .integrators import make_integrator, quiet_float64
from .io import MDLogger, TrajectoryWriter

__all__ = ["Simulation", "initial_momenta"]


def initial_momenta(atoms, temperature: float, seed: int = 0) -> np.ndarray:
    """Momenta (amu·Å/ASE-time): the atoms' velocities if set, else Maxwell–Boltzmann at
    ``temperature`` K (seeded), without centre-of-mass motion (and rotation for molecules)."""
    a = atoms.copy()
    v = a.get_velocities()
    if v is None or not np.any(v):
        if temperature > 0:
            MaxwellBoltzmannDistribution(
                a, temperature_K=temperature, rng=np.random.default_rng(seed), force_temp=True
            )
            Stationary(a)
            if not a.pbc.any() and len(a) > 2:
                ZeroRotation(a)
        v = a.get_velocities()
    return np.asarray(v) * a.get_masses()[:, None]


def _any_overflow(nbrs) -> jax.Array:
    return jnp.any(jnp.asarray(nbrs.did_buffer_overflow) != 0)


class Simulation:
    """MD of one structure or a batch of replicas with a potential.

    Args:
        potential: a :class:`~tace_jax.inference.protocol.PotentialProtocol` (the trained
            ``Potential`` or a test double).
        atoms: ``ase.Atoms``, or a list of them (replicas: same elements in the same order,
            same cell and periodicity; integrated together with ``vmap``).
        config: the :class:`~tace_jax.md.config.MDConfig` (ensemble, thermostat, barostat,
            neighbour list, seed, intervals); default ``MDConfig()``.
        dtype: computation dtype (default: the potential's).
        inputs: model inputs held fixed during the run (``{"electric_field": [0, 0, 0.1]}``,
            …; see :func:`~tace_jax.inference.jax_md.md_system`), over ``atoms.info``/``arrays``.
        **overrides: :class:`~tace_jax.md.config.MDConfig` fields replacing those of
            ``config`` (``Simulation(pot, atoms, ensemble="nvt", temperature=300.0)``).
        step: the step counter to start from (a restart continues at its saved step).
        les_headroom: LES models: relative growth of the lattice vectors the initial k-grid
            allows before it is regrown (NPT).

    Attributes:
        config: the validated configuration in use.
        les_kgrid: the static LES k-grid in use (``None``: no LES or not periodic).
        les_reallocations: how often the k-grid was regrown.
    """

    def __init__(
        self,
        potential,
        atoms,
        config: MDConfig | None = None,
        *,
        dtype=None,
        inputs: dict | None = None,
        step: int = 0,
        les_headroom: float = 0.1,
        **overrides,
    ):
        cfg = md_config(config, **overrides).validate("Simulation")
        self.config = cfg
        self.batched = isinstance(atoms, (list, tuple))
        atoms_list = list(atoms) if self.batched else [atoms]
        _check_replicas(atoms_list)
        self.ensemble = cfg.canonical_ensemble
        self.templates = [a.copy() for a in atoms_list]
        self._system_args = (potential, dtype, dict(inputs or {}))
        les = getattr(potential, "config", None)
        self.les_dl = float(les.les_dl) if getattr(les, "les", False) else None
        self.les_kgrid, self.les_reallocations, self.les_headroom = None, 0, float(les_headroom)
        pbc = np.asarray(atoms_list[0].pbc, bool)
        if self.les_dl is not None and pbc.any() and not pbc.all():
            raise ValueError(f"LES needs pbc all True or all False; the atoms have {pbc.tolist()}")
        if self.les_dl is not None and pbc.all():
            need = ewald_kgrid(atoms_list[0].cell.array, self.les_dl, headroom=les_headroom)
            self.les_kgrid = grow_kgrid(None, need)
        self.system = self._make_system()
        self.integrator = make_integrator(self.system, cfg)
        self.timestep = float(cfg.timestep)
        self.max_chunk = int(cfg.max_chunk)
        self.step = int(step)
        self.limits = health_limits(cfg, self.ensemble)
        self.reallocations = 0
        self.history: list[dict] = []
        seed = int(cfg.seed)
        t0 = cfg.temperature if cfg.init_temperature is None else cfg.init_temperature
        dtype_ = self.system.parts.dtype
        pos = [self._coords(a) for a in atoms_list]
        mom = [initial_momenta(a, t0, seed + k) for k, a in enumerate(atoms_list)]
        R = jnp.asarray(np.stack(pos) if self.batched else pos[0], dtype_)
        P = jnp.asarray(np.stack(mom) if self.batched else mom[0], dtype_)
        self.nbrs = self._allocate(R, None)
        keys = jax.random.split(jax.random.PRNGKey(seed), len(atoms_list))
        init = self._map(self.integrator.init_fn)
        with quiet_float64():
            self.state = jax.jit(init)(keys if self.batched else keys[0], R, P, self.nbrs)
        # drift reference of the health checks: the conserved energy at the start
        self._ref = jax.jit(self._map(lambda s: reference(s, self.integrator.box_fn)))(self.state)
        self._chunks: dict[int, Callable] = {}
        self._observe = jax.jit(self._map(self._observe_one))

    # ----------------------------------------------------------------- helpers
    def _make_system(self):
        """The jax-md system; a LES model's energy has the static k-grid bound."""
        potential, dtype, inputs = self._system_args
        if self.les_dl is not None:
            parts = model_parts(potential, dtype)
            static = {"les_kgrid": self.les_kgrid or (), "les_molecules": not self.les_kgrid}
            apply = parts.apply_fn
            bound = lambda v, g, edge_vecs=None: apply(v, g, edge_vecs=edge_vecs, **static)
            potential, dtype = dataclasses.replace(parts, apply_fn=bound), None
        cfg = self.config
        return md_system(
            potential, self.templates[0], capacity_multiplier=cfg.capacity_multiplier,
            skin=cfg.skin, fractional_coordinates=self.ensemble == "npt_nose_hoover",
            backend=cfg.neighbor_backend, dtype=dtype, **inputs,
        )  # fmt: skip

    def _les_need(self, box) -> jax.Array:
        """Traced ``ewald_kgrid`` ([3] int32) of ``box`` (jax-md columns); zeros: fixed grid."""
        if self.les_kgrid is None or box is None:
            return jnp.zeros(3, jnp.int32)
        b = jnp.asarray(box)
        norms = jnp.linalg.norm(b, axis=0) if b.ndim == 2 else jnp.broadcast_to(b, (3,))
        return jnp.maximum(1, jnp.floor(norms / self.les_dl)).astype(jnp.int32)

    def _les_regrow(self, kmax, state) -> bool:
        """A chunk's cells needed a grid ``kmax`` > ours: regrow, rebuild (recompile), True."""
        if self.les_kgrid is None:
            return False
        need = tuple(int(v) for v in np.max(np.reshape(np.asarray(kmax), (-1, 3)), axis=0))
        if all(n <= g for n, g in zip(need, self.les_kgrid)):
            return False
        cells = np.swapaxes(np.asarray(self._box(state), np.float64), -1, -2)
        h = self.les_headroom
        self.les_kgrid = ensure_kgrid(cells, self.les_kgrid, self.les_dl, headroom=h, need=need)
        self.les_reallocations += 1
        new = self._make_system()  # same neighbour functions: the lists stay valid
        keep = {k: getattr(new, k) for k in ("energy_fn", "parts", "energy_fn_for")}
        self.system = dataclasses.replace(self.system, **keep)
        self.integrator = make_integrator(self.system, self.config)
        self._chunks = {}
        self._observe = jax.jit(self._map(self._observe_one))
        return True

    def _coords(self, atoms) -> np.ndarray:
        pos = np.asarray(atoms.get_positions(), np.float64)
        if self.system.fractional:
            pos = pos @ np.linalg.inv(np.asarray(self.system.cell, np.float64))
        return pos

    def _map(self, fn):
        return jax.vmap(fn) if self.batched else fn

    def _box(self, state):
        return (
            self._map(self.integrator.box_fn)(state) if self.ensemble == "npt_nose_hoover" else None
        )

    def _allocate(self, R, box, hint=None, extra_capacity: int = 0):
        """Allocate (outside ``jit``) one list, or a stacked list per replica of one capacity."""
        nfns = self.system.neighbor_fn
        if not self.batched:
            return nfns.allocate(R, extra_capacity=extra_capacity, box=box, hint=hint)
        boxes = [None if box is None else box[k] for k in range(R.shape[0])]
        first = [nfns.allocate(R[k], box=boxes[k], hint=hint) for k in range(R.shape[0])]
        big = max(range(len(first)), key=lambda k: first[k].max_occupancy)
        if extra_capacity:
            first[big] = nfns.allocate(
                R[big], extra_capacity=extra_capacity, box=boxes[big], hint=first[big]
            )
        # one capacity for all: update the largest list at every replica's positions (an
        # overflow there is caught by the first chunk and handled like any other)
        lists = [
            first[big] if k == big else nfns.update(R[k], first[big], box=boxes[k])
            for k in range(R.shape[0])
        ]
        return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *lists)

    def _chunk_fn(self, n: int) -> Callable:
        if n not in self._chunks:
            integ, update = self.integrator, self.system.neighbor_fn.update
            grid = jnp.asarray(self.les_kgrid or (0, 0, 0), jnp.int32)

            def one(st, nb):
                nb = update(st.position, nb, box=integ.box_fn(st))
                st = integ.apply_fn(st, neighbor=nb)
                need = self._les_need(integ.box_fn(st))  # LES NPT: the grid of the new cell
                return st, nb, _any_overflow(nb) | jnp.any(need > grid), need

            if self.limits is None:
                step = self._map(one)

                def chunk(state, nbrs, ref):
                    def body(carry, _):
                        st, nb, ovf, km = carry
                        st, nb, o, need = step(st, nb)
                        km = jnp.maximum(km, jnp.reshape(need, (-1, 3)).max(0))
                        return (st, nb, ovf | jnp.any(o), km), None

                    carry = (state, nbrs, jnp.asarray(False), jnp.zeros(3, jnp.int32))
                    st, nb, ovf, km = jax.lax.scan(body, carry, None, length=n)[0]
                    return st, nb, ovf, None, km

            else:
                chunk = self._healthy_chunk(n, one)
            self._chunks[n] = jax.jit(chunk)
        return self._chunks[n]

    def _healthy_chunk(self, n: int, one: Callable) -> Callable:
        """A chunk that checks every step, records the first failure ``(index, code, atom,
        value, replica)`` and from then on keeps the last healthy state."""
        check = make_step_check(self.system, self.integrator.box_fn, self.limits)

        def one_checked(st, nb, ref):
            st1, nb1, o, need = one(st, nb)
            return (st1, nb1, o, need, *check(st, st1, ref))

        step = self._map(one_checked)
        keep = lambda c, a, b: jax.tree_util.tree_map(lambda x, y: jnp.where(c, x, y), a, b)

        def chunk(state, nbrs, ref):
            h0, _ = ref
            _, v0 = self._map(lambda s: reference(s, self.integrator.box_fn))(state)
            ref = (h0, v0)

            def body(carry, i):
                st, nb, ovf, bad, km = carry
                st1, nb1, o, need, code, atom, value = step(st, nb, ref)
                frozen = bad[0] >= 0
                ovf = ovf | (jnp.any(o) & ~frozen)  # o: list overflow or LES grid outgrown
                km = jnp.where(frozen, km, jnp.maximum(km, jnp.reshape(need, (-1, 3)).max(0)))
                fail = jnp.reshape(code > 0, (-1,))
                new = jnp.any(fail) & ~ovf & ~frozen  # a list overflow redoes the chunk instead
                r = jnp.argmax(fail)
                pick = lambda x: jnp.reshape(x, (-1,))[r]
                found = (i, pick(code), pick(atom), pick(value).astype(bad[3].dtype), r)
                bad = tuple(jnp.where(new, jnp.asarray(x, b.dtype), b) for x, b in zip(found, bad))
                stop = frozen | new
                return (keep(stop, st, st1), keep(stop, nb, nb1), ovf, bad, km), None

            dtype = self.system.parts.dtype
            bad = (jnp.int32(-1), jnp.int32(0), jnp.int32(0), jnp.zeros((), dtype), jnp.int32(0))
            carry = (state, nbrs, jnp.asarray(False), bad, jnp.zeros(3, jnp.int32))
            return jax.lax.scan(body, carry, jnp.arange(n, dtype=jnp.int32))[0]

        return chunk

    def _observe_one(self, st, nb):
        sys_, integ = self.system, self.integrator
        box = integ.box_fn(st)
        nb = sys_.neighbor_fn.update(st.position, nb, box=box)
        epot = sys_.energy_fn(st.position, neighbor=nb, box=box)
        ekin = 0.5 * jnp.sum(st.momentum**2 / jnp.reshape(st.mass, (-1, 1)))
        n = st.position.shape[0]
        obs = {
            "epot": epot,
            "ekin": ekin,
            "etot": epot + ekin,
            "temperature": 2.0 * ekin / (3.0 * n * units.kB),
        }
        if integ.invariant_fn is not None:
            obs["conserved"] = integ.invariant_fn(st, nb)
        if sys_.periodic and all(sys_.pbc):
            b = sys_.box if box is None else box
            obs["pressure_gpa"] = pressure_fn(sys_.energy_fn, st.position, nb, b, ekin) / units.GPa
            obs["volume"] = jnp.abs(jnp.linalg.det(b))
        return obs, nb, _any_overflow(nb)

    def _advance(self, n: int, max_attempts: int = 6) -> None:
        st0, nb0 = self.state, self.nbrs
        for attempt in range(max_attempts):
            with quiet_float64():
                st, nb, ovf, bad, kmax = self._chunk_fn(n)(st0, nb0, self._ref)
            if self._les_regrow(kmax, st):  # a cell outgrew the LES k-grid: redo the chunk
                continue
            if bad is not None and int(bad[0]) >= 0:  # before any overflow: a real failure
                self.state, self.nbrs = st, nb  # frozen at the last healthy step
                try:
                    raise_unstable(bad, self.step, self.limits, self.batched)
                except SimulationUnstable as err:
                    self.step = err.last_step
                    raise
            if not bool(ovf):
                self.state, self.nbrs = st, nb
                return
            self.reallocations += 1
            hint = self._allocate(st.position, self._box(st))
            if self.batched:  # the stacked hint's capacity is what matters
                hint = jax.tree_util.tree_map(lambda x: x[0], hint)
            extra = int((attempt + 1) * max(1, hint.max_occupancy // 10))  # headroom
            nb0 = self._allocate(st0.position, self._box(st0), hint=hint, extra_capacity=extra)
        raise RuntimeError(
            f"neighbour list still overflowing after {max_attempts} reallocations at step "
            f"{self.step}; the system is probably exploding (check the time step)"
        )

    # ----------------------------------------------------------------- public API
    def observe(self) -> dict | list[dict]:
        """Observables of the current state (per replica when batched): ``step``, ``time_ps``,
        ``epot``, ``ekin``, ``etot`` (eV), ``temperature`` (K, 3N degrees of freedom),
        ``conserved`` (eV), and for periodic cells ``pressure_gpa`` and ``volume`` (Å³)."""
        with quiet_float64():
            obs, nb, ovf = self._observe(self.state, self.nbrs)
            if bool(jnp.any(ovf)):
                self.reallocations += 1
                self.nbrs = self._allocate(self.state.position, self._box(self.state))
                obs, nb, _ = self._observe(self.state, self.nbrs)
        self.nbrs = nb
        base = {"step": self.step, "time_ps": self.step * self.timestep * 1e-3}
        base["conserved"] = float("nan")  # replaced where the ensemble conserves something
        obs = jax.device_get(obs)
        if not self.batched:
            return base | {k: float(v) for k, v in obs.items()}
        count = len(self.templates)
        return [base | {k: float(v[i]) for k, v in obs.items()} for i in range(count)]

    def get_atoms(self, replica: int = 0):
        """The current structure as ``ase.Atoms`` (positions, velocities, cell; energy and forces
        on a ``SinglePointCalculator``; ``info["md_step"]`` and ``info["md_time_ps"]``)."""
        pick = (lambda x: x[replica]) if self.batched else (lambda x: x)
        st = jax.tree_util.tree_map(pick, self.state)
        box = self.integrator.box_fn(st)
        atoms = self.templates[replica].copy()
        if box is not None:
            atoms.set_cell(np.asarray(box).T, scale_atoms=False)
        pos = self.system.to_cartesian(st.position, box)
        atoms.set_positions(np.asarray(pos, np.float64))
        mass = np.asarray(st.mass).reshape(-1, 1)
        atoms.set_velocities(np.asarray(st.momentum) / mass)
        nb = jax.tree_util.tree_map(pick, self.nbrs)
        nb = self.system.neighbor_fn.update(st.position, nb, box=box)
        e = float(self.system.energy_fn(st.position, neighbor=nb, box=box))
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=np.asarray(st.force))
        atoms.info["md_step"] = int(self.step)
        atoms.info["md_time_ps"] = self.step * self.timestep * 1e-3
        return atoms

    def run(
        self,
        steps: int,
        log_interval: int | None = None,
        trajectory=None,
        traj_interval: int | None = None,
        logfile=None,
        progress: bool = True,
        callback: Callable | None = None,
        restart=None,
        recorder=None,
    ) -> list:
        """Advance ``steps`` steps.

        Args:
            steps: number of MD steps.
            log_interval: steps between observations (also the chunk length, capped by
                ``max_chunk``); default ``config.log_interval``.
            trajectory: path (``.traj`` → ASE trajectory, anything else → extxyz) or a
                :class:`~tace_jax.md.io.TrajectoryWriter`; replica 0 when batched.
            traj_interval: steps between frames (default ``config.traj_interval``, else
                ``log_interval``).
            logfile: path for the thermodynamics log (``"-"`` for stdout) or an open
                :class:`~tace_jax.md.io.MDLogger` (left open).
            progress: show a tqdm bar.
            callback: ``callback(sim, observation)`` after each observation.
            restart: extxyz path for the last healthy frame when a health check fails
                (positions, momenta, cell, ``info["md_step"]``; replica of the failure).
            recorder: called as ``recorder(sim)`` at step 0 and every ``recorder.interval``
                steps (chunks stop there), e.g. a :class:`~tace_jax.md.recording.ResponseRecorder`.

        Returns:
            the observations made during this call (also appended to ``history``).

        Raises:
            SimulationUnstable: a health check failed; the simulation (and ``step``) stopped at
                the last healthy step, the trajectory holds the frames written before it, and
                the error carries that frame (``atoms``) and the ``restart`` path.
        """
        from tqdm.auto import tqdm

        log_interval = self.config.log_interval if log_interval is None else log_interval
        log_interval = max(1, int(log_interval))
        traj_interval = max(1, int(traj_interval or self.config.traj_interval or log_interval))
        writer = trajectory
        if trajectory is not None and not isinstance(trajectory, TrajectoryWriter):
            writer = TrajectoryWriter(trajectory)
        logger = logfile
        if logfile is not None and not isinstance(logfile, MDLogger):
            logger = MDLogger(logfile)
        records = []

        def record():
            obs = self.observe()
            records.append(obs)
            self.history.append(obs)
            first = obs[0] if self.batched else obs
            if logger is not None:
                logger(first)
            if callback is not None:
                callback(self, obs)
            return first

        try:
            if not self.history:
                record()
                if writer is not None:
                    writer.write(self.get_atoms())
            rec_every = max(1, int(recorder.interval)) if recorder is not None else None
            if recorder is not None and self.step % rec_every == 0:
                recorder(self)
            end = self.step + int(steps)
            with tqdm(total=int(steps), disable=not progress, desc=f"MD {self.ensemble}") as bar:
                while self.step < end:
                    nxt = lambda k: (self.step // k + 1) * k
                    stop = min(
                        nxt(log_interval), nxt(traj_interval), end, self.step + self.max_chunk
                    )
                    stop = min(stop, nxt(rec_every)) if rec_every else stop
                    self._advance(stop - self.step)
                    bar.update(stop - self.step)
                    self.step = stop
                    if stop % log_interval == 0 or stop == end:
                        first = record()
                        bar.set_postfix(T=f"{first['temperature']:.1f}", E=f"{first['etot']:.5f}")
                    if writer is not None and stop % traj_interval == 0:
                        writer.write(self.get_atoms())
                    if rec_every and stop % rec_every == 0:
                        recorder(self)
        except SimulationUnstable as err:
            atoms = self.get_atoms(err.replica or 0)
            if restart is not None:
                import ase.io

                ase.io.write(str(restart), atoms, format="extxyz")
            err.set_restart(atoms, restart)
            raise
        finally:
            if logger is not None and logger is not logfile:
                logger.close()
            if writer is not None and writer is not trajectory:
                writer.close()
        return records


def _check_replicas(atoms_list: Sequence) -> None:
    if not atoms_list:
        raise ValueError("no structures given")
    ref = atoms_list[0]
    for k, a in enumerate(atoms_list[1:], start=1):
        same = (
            len(a) == len(ref)
            and np.array_equal(a.numbers, ref.numbers)
            and np.array_equal(a.pbc, ref.pbc)
            and np.allclose(a.cell.array, ref.cell.array)
        )
        if not same:
            raise ValueError(
                f"replica {k} differs from replica 0 in size, elements, pbc or cell; batched "
                "replicas must be copies of one system (positions/velocities may differ)"
            )
