"""Recording response properties (dipole or polarization P, polarizability α) along MD.

A :class:`ResponseRecorder` is handed to :meth:`~tace_jax.md.runners.Simulation.run` (or
:func:`~tace_jax.md.run.run_md`). Every ``every`` steps the runner stops its chunk and the
recorder keeps only the positions (and cell) of the current state; nothing else is evaluated
during the run. :meth:`ResponseRecorder.compute` then evaluates the response properties of all
recorded frames in batches of ``batch_size`` through ``potential.predict`` — the same numbers a
user gets from ``Potential.predict`` on those frames. The series feed the MD spectra of
``docs/theory.md §3`` (TACE paper, arXiv 2509.14961), equally spaced by
``every · timestep`` fs.

Which model output is recorded (``kind`` → property):

* ``"dipole"``: ``polarization`` (``P = −∂E/∂ℰ``) for a model with an ``electric_field``
  input, else the direct head ``direct_dipole``;
* ``"polarizability"``: ``conservative_polarizability`` (``α = ∂P/∂ℰ``) for a field model,
  else ``direct_polarizability``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

__all__ = ["ResponseRecorder", "response_property"]

_KINDS = ("dipole", "polarizability")


def response_property(potential, kind: str) -> str:
    """The ``predict`` property recorded for ``kind`` (``"dipole"`` or ``"polarizability"``).

    Raises:
        ValueError: unknown ``kind``, or the model has neither an ``electric_field`` input
            nor the matching direct head.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown response kind {kind!r}; expected one of {_KINDS}")
    names = tuple(getattr(potential, "input_names", ()) or ())
    field = "polarization" if kind == "dipole" else "conservative_polarizability"
    direct = f"direct_{kind}"
    if "electric_field" in names:
        return field
    heads = potential.config_heads() if hasattr(potential, "config_heads") else ()
    if direct in heads:
        return direct
    raise ValueError(
        f"cannot record {kind}: the model has no 'electric_field' input (for {field}) and no "
        f"{direct!r} head (its outputs: {tuple(heads)})"
    )


class ResponseRecorder:
    """Collects frames every ``every`` MD steps and evaluates response properties in batches.

    Args:
        potential: the potential whose ``predict`` evaluates the frames (normally the one
            driving the MD).
        kinds: ``"dipole"`` and/or ``"polarizability"`` (see the module docstring).
        every: recording stride in MD steps (≥ 1); the runner stops its chunks there.
        batch_size: frames per ``predict`` call in :meth:`compute`.
        inputs: model inputs passed to ``predict`` (e.g. the run's ``electric_field``).
        replica: the replica recorded when the simulation is batched.

    Attributes:
        steps: MD step of each recorded frame.
        frames: the recorded ``ase.Atoms`` (after :meth:`atoms`; built lazily).
    """

    def __init__(
        self,
        potential,
        kinds: Sequence[str] = ("dipole",),
        every: int = 1,
        batch_size: int = 32,
        inputs: dict | None = None,
        replica: int = 0,
    ):
        if isinstance(kinds, str):
            kinds = (kinds,)
        if int(every) < 1:
            raise ValueError(f"ResponseRecorder: every must be >= 1, got {every}")
        if int(batch_size) < 1:
            raise ValueError(f"ResponseRecorder: batch_size must be >= 1, got {batch_size}")
        self.potential = potential
        self.properties = {k: response_property(potential, k) for k in kinds}
        self.interval = int(every)
        self.batch_size = int(batch_size)
        self.inputs = dict(inputs or {})
        self.replica = int(replica)
        self.steps: list[int] = []
        self._positions: list = []
        self._boxes: list = []
        self._template = None
        self._system = None
        self.timestep_fs: float | None = None

    def __call__(self, sim) -> None:
        """Keep the current frame of ``sim`` (a :class:`~tace_jax.md.runners.Simulation`).

        Stores device arrays only (no transfer, no model evaluation); a frame at a step
        already recorded is ignored."""
        if self.steps and self.steps[-1] == sim.step:
            return
        st = sim.state
        if sim.batched:
            st = jax.tree_util.tree_map(lambda x: x[self.replica], st)
        box = sim.integrator.box_fn(st)
        self._positions.append(sim.system.to_cartesian(st.position, box))
        self._boxes.append(box)
        self.steps.append(int(sim.step))
        if self._template is None:
            self._template = sim.templates[self.replica].copy()
            self._template.calc = None
            self.timestep_fs = float(sim.timestep)

    @property
    def dt_fs(self) -> float:
        """Time between recorded frames, fs (``every · timestep``)."""
        if self.timestep_fs is None:
            raise ValueError("ResponseRecorder: nothing recorded yet")
        return self.interval * self.timestep_fs

    def atoms(self) -> list:
        """The recorded frames as ``ase.Atoms`` (positions and, for NPT, cell)."""
        out = []
        for pos, box in zip(jax.device_get(self._positions), jax.device_get(self._boxes)):
            a = self._template.copy()
            if box is not None:
                a.set_cell(np.asarray(box).T, scale_atoms=False)
            a.set_positions(np.asarray(pos, np.float64))
            out.append(a)
        return out

    def compute(self, progress: bool = False) -> dict[str, np.ndarray]:
        """Evaluate the recorded frames in batches (one compiled shape: a short last batch is
        padded with copies of its last frame, whose results are dropped).

        Args:
            progress: show a tqdm bar over the batches.

        Returns:
            ``{"steps": [T], "dipole": [T, 3], "polarizability": [T, 3, 3]}`` (the kinds asked
            for; numpy float64), plus ``"property_<kind>"`` naming the model output used.
        """
        frames = self.atoms()
        if not frames:
            raise ValueError("ResponseRecorder: nothing recorded (run the simulation first)")
        props = tuple(dict.fromkeys(self.properties.values()))
        results = []
        from tqdm.auto import tqdm

        size = min(self.batch_size, len(frames))
        for i in tqdm(range(0, len(frames), size), disable=not progress, desc="response"):
            chunk = frames[i : i + size]
            n = len(chunk)
            # a short last batch is padded with copies of its last frame (dropped again), so
            # that every batch has the same number of graphs and reuses one compiled shape
            chunk = chunk + [chunk[-1]] * (size - n)
            results += self.potential.predict(chunk, props, batch_size=size, **self.inputs)[:n]
        out: dict = {"steps": np.asarray(self.steps, np.int64)}
        for kind, prop in self.properties.items():
            out[kind] = np.stack([np.asarray(r[prop], np.float64) for r in results])
            out[f"property_{kind}"] = prop
        return out
