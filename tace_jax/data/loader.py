"""`GraphLoader`: deterministic, resumable, prefetched batches of one fixed shape.

Every batch is padded to the same ``(N, E, G)`` budgets, so a jitted step compiles once. The
batch sequence of epoch ``e`` depends only on ``(seed, e)``: the order is
``numpy.random.default_rng([seed, e]).permutation(n)`` (or ``arange(n)`` without shuffling),
cut into batches of ``batch_size`` graphs (``packing="fixed"``) or packed greedily until a
budget is full (``packing="greedy"``). Training can therefore resume mid-epoch from
``(epoch, step)`` exactly.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from .batch import BatchAssembler
from .errors import DataError
from .graph import round_up
from .neighbor_cache import NeighborCache
from .structure import Structure

__all__ = ["GraphLoader", "plan_batches", "prefetch_map"]


def plan_batches(
    order, n_nodes, n_edges, packing: str, batch_size: int, drop_last: bool, budgets
) -> list[np.ndarray]:
    """The batches of ``order`` (structure indices): ``packing="fixed"``, ``batch_size`` each
    (the short last one dropped if ``drop_last``); otherwise greedy within ``budgets`` (nodes,
    edges, graphs, each with one padding slot)."""
    order = np.asarray(order)
    if packing == "fixed":
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
            batches.pop()
        return batches
    n_b, e_b, g_b = budgets
    batches, cur, cn, ce = [], [], 0, 0
    for i in order.tolist():
        ni, ei = int(n_nodes[i]), int(n_edges[i])
        if cur and (cn + ni > n_b - 1 or ce + ei > e_b or len(cur) + 1 > g_b - 1):
            batches.append(np.array(cur))
            cur, cn, ce = [], 0, 0
        cur.append(i)
        cn, ce = cn + ni, ce + ei
    if cur:
        batches.append(np.array(cur))
    return batches


class GraphLoader:
    """Iterate padded :class:`~tace_jax.data.graph.Graph` batches over a data set.

    Args:
        structures: the data set.
        cutoff: neighbour cutoff, Å (lists are computed once, at construction).
        atomic_numbers: the model's sorted element list.
        batch_size: graphs per batch (``"fixed"``), or the target mean for ``"greedy"``.
        budgets: ``(N, E, G)`` or ``"auto"``. Auto for ``"fixed"``: the sums of the
            ``batch_size`` largest node and edge counts (+1 padding) rounded up to ``multiple``,
            ``G = batch_size + 1`` — an upper bound for every possible batch. Auto for
            ``"greedy"``: ``batch_size ×`` the mean node/edge counts (at least the largest
            structure) rounded up, ``G = max_graphs + 1``.
        shuffle: reshuffle every epoch.
        seed: shuffling seed.
        drop_last: drop the last incomplete batch (``"fixed"`` only).
        packing: ``"fixed"`` or ``"greedy"``.
        max_graphs: greedy only, most graphs per batch (default ``2 * batch_size``).
        dtype: float dtype of the batches (``"float32"`` or ``"float64"``).
        prefetch: queue size of the background thread (0: build batches in the caller).
        properties: target names to include (default: those present in the data).
        neighbor_cache: a :class:`NeighborCache` to reuse (e.g. with a disk directory).
        multiple: budgets are rounded up to this.
        transform: applied to every batch (in the prefetch thread), e.g. ``jax.device_put``.
        inputs: model inputs for ``Graph.extras`` (``TACEConfig.input_names``; see
            :class:`~tace_jax.data.batch.BatchAssembler`).
        input_limits: exclusive upper bounds of integer inputs.
    """

    def __init__(
        self,
        structures: Sequence[Structure],
        cutoff: float,
        atomic_numbers: Sequence[int],
        batch_size: int = 1,
        *,
        budgets: tuple[int, int, int] | str = "auto",
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        packing: str = "fixed",
        max_graphs: int | None = None,
        dtype="float32",
        prefetch: int = 2,
        properties: Sequence[str] | None = None,
        neighbor_cache: NeighborCache | None = None,
        multiple: int = 64,
        transform: Callable | None = None,
        inputs: Sequence[str] | None = None,
        input_limits: dict[str, int] | None = None,
    ):
        if int(batch_size) < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        if packing not in ("fixed", "greedy"):
            raise DataError(f"packing must be 'fixed' or 'greedy', got {packing!r}")
        self._asm = BatchAssembler(
            structures,
            cutoff,
            atomic_numbers,
            dtype,
            properties,
            neighbor_cache,
            inputs=inputs,
            input_limits=input_limits,
        )
        self.batch_size = int(batch_size)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.packing, self.prefetch, self.transform = packing, int(prefetch), transform
        self.multiple = int(multiple)
        self.max_graphs = int(max_graphs) if max_graphs else 2 * self.batch_size
        self.budgets = (
            self._auto_budgets() if isinstance(budgets, str) else tuple(int(b) for b in budgets)
        )
        if isinstance(budgets, str) and budgets != "auto":
            raise DataError(f"budgets must be (N, E, G) or 'auto', got {budgets!r}")
        self._asm.fits(self.budgets)
        if packing == "fixed" and self.budgets[2] < self.batch_size + 1:
            raise DataError(f"budgets {self.budgets}: G must be >= batch_size + 1")
        self.epoch, self.step = 0, 0
        self._plans: dict[int, list[np.ndarray]] = {}

    # ------------------------------------------------------------------ properties
    @property
    def structures(self) -> list[Structure]:
        """The data set, in its original order."""
        return self._asm.structures

    @property
    def properties(self) -> tuple[str, ...]:
        """Target names present in every batch's ``targets``."""
        return self._asm.properties

    @property
    def dtype(self) -> np.dtype:
        """Float dtype of the batches."""
        return self._asm.dtype

    def _auto_budgets(self) -> tuple[int, int, int]:
        n, e, m = self._asm.n_nodes, self._asm.n_edges, self.multiple
        if self.packing == "fixed":
            k = min(self.batch_size, len(n))
            top = lambda a: int(np.sort(a)[::-1][:k].sum())
            return round_up(top(n) + 1, m), round_up(top(e) + 1, m), self.batch_size + 1
        nb = max(self.batch_size * float(n.mean()), float(n.max())) + 1
        eb = max(self.batch_size * float(e.mean()), float(e.max())) + 1
        return round_up(int(np.ceil(nb)), m), round_up(int(np.ceil(eb)), m), self.max_graphs + 1

    # ------------------------------------------------------------------ planning
    def order(self, epoch: int) -> np.ndarray:
        """The structure order of ``epoch``."""
        n = len(self._asm)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, int(epoch)]).permutation(n)

    def plan(self, epoch: int) -> list[np.ndarray]:
        """Structure indices of every batch of ``epoch`` (deterministic)."""
        epoch = int(epoch)
        if epoch not in self._plans:
            if len(self._plans) > 4:
                self._plans.clear()
            self._plans[epoch] = self._make_plan(self.order(epoch))
        return self._plans[epoch]

    def _make_plan(self, order: np.ndarray) -> list[np.ndarray]:
        return plan_batches(
            order, self._asm.n_nodes, self._asm.n_edges, self.packing, self.batch_size,
            self.drop_last, self.budgets,
        )  # fmt: skip

    def num_batches(self, epoch: int | None = None) -> int:
        """Number of batches in ``epoch`` (default: the current one)."""
        return len(self.plan(self.epoch if epoch is None else epoch))

    def __len__(self) -> int:
        return self.num_batches()

    # ------------------------------------------------------------------ state
    def set_epoch(self, epoch: int, step: int = 0) -> None:
        """Position the loader at batch ``step`` of ``epoch``."""
        if epoch < 0 or step < 0:
            raise DataError(f"set_epoch: epoch and step must be >= 0, got {epoch}, {step}")
        self.epoch, self.step = int(epoch), int(step)

    def state_dict(self) -> dict:
        """``{"epoch", "step", "seed"}``: enough to regenerate the remaining batches."""
        return {"epoch": self.epoch, "step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (the seed must match)."""
        if int(state.get("seed", self.seed)) != self.seed:
            raise DataError(f"load_state_dict: seed {state['seed']} != loader seed {self.seed}")
        self.set_epoch(int(state["epoch"]), int(state["step"]))

    # ------------------------------------------------------------------ iteration
    def make_batch(self, idx: Sequence[int]):
        """The padded batch of structures ``idx`` (with ``transform`` applied)."""
        graph = self._asm.assemble(idx, self.budgets)
        return graph if self.transform is None else self.transform(graph)

    def epoch_batches(self, epoch: int, start_step: int = 0) -> Iterator:
        """Batches ``start_step, …`` of ``epoch``, without changing the loader state."""
        items = self.plan(epoch)[int(start_step) :]
        if self.prefetch <= 0:
            return (self.make_batch(idx) for idx in items)
        return prefetch_map(self.make_batch, items, self.prefetch)

    def __iter__(self) -> Iterator:
        """Batches of the current epoch from ``step``; advances ``step`` per yielded batch and
        moves to the next epoch at the end."""
        epoch, start = self.epoch, self.step
        for k, batch in enumerate(self.epoch_batches(epoch, start), start=start):
            self.step = k + 1
            yield batch
        self.epoch, self.step = epoch + 1, 0


def prefetch_map(
    make: Callable, items: Iterable, size: int, name: str = "GraphLoader-prefetch"
) -> Iterator:
    """Run ``make(item)`` for each item in a daemon thread (``name``), handing results over a
    bounded queue; exceptions are re-raised in the consumer; stops early when the consumer
    does. Also the device prefetch of the trainer (:mod:`tace_jax.train.prefetch`)."""
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(msg) -> bool:
        while not stop.is_set():
            try:
                q.put(msg, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def worker():
        try:
            for item in items:
                if stop.is_set() or not put(("ok", make(item))):
                    return
            put(("done", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(("err", exc))

    thread = threading.Thread(target=worker, name=name, daemon=True)
    thread.start()

    def consume():
        try:
            while True:
                kind, value = q.get()
                if kind == "done":
                    return
                if kind == "err":
                    raise value
                yield value
        finally:
            stop.set()
            thread.join(timeout=5.0)

    return consume()
