"""`StreamingLoader`: padded batches streamed from preprocessed shards, bounded host memory.

The drop-in counterpart of :class:`~tace_jax.data.loader.GraphLoader` (same interface: ``plan``,
``num_batches``, ``epoch_batches``, ``make_batch``, ``set_epoch``, ``state_dict``) over a
:class:`~tace_jax.data.shards.ShardSet`. Only small per-structure index arrays (atom and edge
counts) live in memory; structures are read from disk as the batches need them and assembled
by the same :class:`~tace_jax.data.batch.BatchAssembler` as in-memory training, in a background
thread with a bounded queue (``prefetch``; ``transform=jax.device_put`` puts them on the device
there). The plan of epoch ``e`` depends only on ``(seed, e)`` and the counts, so training
resumes mid-epoch exactly.

Orders (``shuffle``):

* ``"buffer"`` (default): shards in a random order, each shard's structures in a random order,
  mixed through a shuffle buffer of ``buffer_size`` structures. Shards are read whole, once
  per epoch; at most ``buffer_size`` + one shard of structures are held.
* ``"global"``: ``default_rng([seed, e]).permutation`` over the structures, exactly the order
  of :class:`GraphLoader`; structures are read one by one (random access, slower).
* ``"none"``: the given order.

Packing: ``batch_size`` graphs per batch (budgets as :class:`GraphLoader` ``"fixed"``), or
budget-driven (``edge_budget``): batches are filled greedily up to the edge budget, and the
node and graph caps come from one greedy packing pass over the counts (the largest node and
graph totals of a batch of at most ``edge_budget`` edges). :meth:`padding_efficiency` reports
the real/padded fractions. Batches follow docs/theory.md §2.1 (padded static shapes).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from .batch import BATCH_LABELS, BatchAssembler
from .errors import DataError
from .graph import round_up
from .loader import plan_batches, prefetch_map
from .neighbor_cache import NeighborCache
from .shards import ShardSet

__all__ = ["StreamingLoader", "greedy_caps"]

_ORDERS = ("buffer", "global", "none")


class StreamingLoader:
    """Iterate padded :class:`~tace_jax.data.graph.Graph` batches over shards on disk.

    Args:
        shards: the preprocessed directory (:class:`~tace_jax.data.shards.ShardSet`).
        atomic_numbers: the model's sorted element list.
        batch_size: graphs per batch (ignored with ``edge_budget``).
        indices: global structure indices to use, in this order (default all).
        budgets: ``(N, E, G)`` or ``"auto"`` (see the module docstring).
        edge_budget: edges per batch: budget-driven packing with greedy node/graph caps.
        shuffle: ``"buffer"``, ``"global"`` or ``"none"`` (``True``/``False``: buffer/none).
        buffer_size: structures in the shuffle buffer.
        seed: shuffling seed.
        drop_last: drop an incomplete last batch (fixed packing).
        dtype: float dtype of the batches.
        prefetch: queue size of the background thread (0: build batches in the caller).
        properties: target names (default: the labels some of these structures have).
        multiple: node/edge budgets are rounded up to this.
        transform: applied to every batch in the background thread (e.g. ``jax.device_put``).
        inputs: model inputs for ``Graph.extras`` (``TACEConfig.input_names``).
        input_limits: exclusive upper bounds of integer inputs.
        cutoff: the model's cutoff; a different preprocessing cutoff raises.
    """

    def __init__(
        self,
        shards: ShardSet,
        atomic_numbers: Sequence[int],
        batch_size: int = 1,
        *,
        indices=None,
        budgets: tuple[int, int, int] | str = "auto",
        edge_budget: int | None = None,
        shuffle: str | bool = "buffer",
        buffer_size: int = 1024,
        seed: int = 0,
        drop_last: bool = False,
        dtype="float32",
        prefetch: int = 2,
        properties: Sequence[str] | None = None,
        multiple: int = 64,
        transform: Callable | None = None,
        inputs: Sequence[str] | None = None,
        input_limits: Mapping[str, int] | None = None,
        cutoff: float | None = None,
    ):
        self.shards = shards
        if cutoff is not None:
            shards.check_cutoff(cutoff)
        self.indices = np.arange(len(shards)) if indices is None else np.asarray(indices, np.int64)
        if len(self.indices) == 0:
            raise DataError(f"{shards.directory}: no structures to batch")
        shuffle = {True: "buffer", False: "none", None: "none"}.get(shuffle, shuffle)
        if shuffle not in _ORDERS:
            raise DataError(f"shuffle must be one of {_ORDERS}, got {shuffle!r}")
        if int(batch_size) < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), bool(drop_last)
        self.batch_size, self.buffer_size = int(batch_size), max(1, int(buffer_size))
        self.prefetch, self.transform, self.multiple = int(prefetch), transform, int(multiple)
        self.atomic_numbers = [int(z) for z in atomic_numbers]
        self.dtype, self.cutoff = dtype, shards.cutoff
        self.inputs = None if inputs is None else tuple(inputs)
        self.input_limits = dict(input_limits or {})
        present = {  # labels of at least one of these structures (as GraphLoader)
            p for p in shards.labels if shards.label_mask(p, self.indices).any()
        }
        if properties is None:
            properties = [p for p in BATCH_LABELS if p in present]
        self.properties = tuple(p for p in BATCH_LABELS if p in properties)
        self._default_inputs = ("level", "total_charge") + tuple(
            n for n in ("charges", "electric_field") if n in present
        )
        n, e = shards.n_nodes[self.indices], shards.n_edges[self.indices]
        self.packing = "budget" if edge_budget else "fixed"
        if not isinstance(budgets, str):
            self.budgets = tuple(int(b) for b in budgets)
        elif budgets != "auto":
            raise DataError(f"budgets must be (N, E, G) or 'auto', got {budgets!r}")
        elif edge_budget:
            order = np.random.default_rng(self.seed).permutation(len(n))
            self.budgets = greedy_caps(n[order], e[order], int(edge_budget), self.multiple)
        else:
            k = min(self.batch_size, len(n))
            top = lambda a: int(np.sort(a)[::-1][:k].sum())
            m = self.multiple
            self.budgets = (round_up(top(n) + 1, m), round_up(top(e) + 1, m), self.batch_size + 1)
        n_b, e_b, g_b = self.budgets
        bad = np.where((n + 1 > n_b) | (e > e_b))[0]
        if len(bad) or g_b < 2:
            i = int(bad[0]) if len(bad) else 0
            raise DataError(
                f"{shards.where(int(self.indices[i]))}: field 'positions': structure with "
                f"{n[i]} atoms and {e[i]} edges does not fit budgets {self.budgets} "
                "(at least 2 graph slots, one is padding)"
            )
        if self.packing == "fixed" and g_b < self.batch_size + 1:
            raise DataError(f"budgets {self.budgets}: G must be >= batch_size + 1")
        self.epoch, self.step = 0, 0
        self._plans: dict[int, list[np.ndarray]] = {}
        self.peak_pending = 0  # most structures held by a reader (memory bound check)

    def __len__(self) -> int:
        return self.num_batches()

    # ------------------------------------------------------------------ planning
    def order(self, epoch: int) -> np.ndarray:
        """Global structure indices in the order of ``epoch``."""
        idx = self.indices
        if self.shuffle == "none":
            return idx
        rng = np.random.default_rng([self.seed, int(epoch)])
        if self.shuffle == "global":
            return idx[rng.permutation(len(idx))]
        shard = self.shards.shard_of(idx)
        stream = []
        for k in rng.permutation(self.shards.num_shards):
            members = idx[shard == k]
            stream.extend(members[rng.permutation(len(members))].tolist())
        out, buf, size = [], [], self.buffer_size
        for i in stream:
            if len(buf) < size:
                buf.append(i)
                continue
            j = int(rng.integers(size))
            out.append(buf[j])
            buf[j] = i
        rng.shuffle(buf)
        return np.asarray(out + buf, np.int64)

    def plan(self, epoch: int) -> list[np.ndarray]:
        """Global structure indices of every batch of ``epoch`` (deterministic)."""
        epoch = int(epoch)
        if epoch not in self._plans:
            if len(self._plans) > 4:
                self._plans.clear()
            self._plans[epoch] = self._make_plan(self.order(epoch))
        return self._plans[epoch]

    def _make_plan(self, order: np.ndarray) -> list[np.ndarray]:
        return plan_batches(
            order, self.shards.n_nodes, self.shards.n_edges, self.packing, self.batch_size,
            self.drop_last, self.budgets,
        )  # fmt: skip

    def num_batches(self, epoch: int | None = None) -> int:
        """Number of batches in ``epoch`` (default: the current one)."""
        return len(self.plan(self.epoch if epoch is None else epoch))

    def padding_efficiency(self, epoch: int = 0) -> dict:
        """Real / padded fractions of nodes, edges and graphs over the batches of ``epoch``."""
        plan, (n_b, e_b, g_b) = self.plan(epoch), self.budgets
        cat = np.concatenate(plan)
        nb = len(plan)
        return {
            "batches": nb,
            "budgets": list(self.budgets),
            "nodes": float(self.shards.n_nodes[cat].sum() / (nb * n_b)),
            "edges": float(self.shards.n_edges[cat].sum() / (nb * e_b)),
            "graphs": float(len(cat) / (nb * (g_b - 1))),
        }

    def describe(self) -> str:
        """One log line: packing, budgets and padding efficiency."""
        p = self.padding_efficiency(0)
        return (
            f"streaming {len(self.indices)} structures from {self.shards.directory} "
            f"({self.shards.num_shards} shards, shuffle={self.shuffle}, packing={self.packing}): "
            f"{p['batches']} batches of budgets (N, E, G) = {tuple(self.budgets)}; padding "
            f"efficiency nodes {p['nodes']:.1%}, edges {p['edges']:.1%}, graphs {p['graphs']:.1%}"
        )

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
    def _assemble(self, pairs) -> object:
        ss = [s for s, _ in pairs]
        cache = _KnownEdges(self.cutoff, {id(s): e for s, e in pairs})
        asm = BatchAssembler(
            ss,
            self.cutoff,
            self.atomic_numbers,
            self.dtype,
            self.properties,
            cache,
            inputs=self.inputs,
            input_limits=self.input_limits,
        )
        if self.inputs is None:  # the same extras in every batch (not only where present)
            asm.input_names = self._default_inputs
        graph = asm.assemble(range(len(ss)), self.budgets)
        return graph if self.transform is None else self.transform(graph)

    def make_batch(self, idx: Sequence[int]):
        """The padded batch of the global structure indices ``idx`` (random access)."""
        return self._assemble([(s, e) for _, s, e in self.shards.read_items(idx)])

    def epoch_batches(self, epoch: int, start_step: int = 0) -> Iterator:
        """Batches ``start_step, …`` of ``epoch``, without changing the loader state."""
        items = self.plan(epoch)[int(start_step) :]
        reader = _Reader(self.shards, items, by_shard=self.shuffle != "global")

        def make(idx):
            out = self._assemble(reader.take(idx))
            self.peak_pending = max(self.peak_pending, reader.peak)
            return out

        if self.prefetch <= 0:
            return (make(idx) for idx in items)
        return prefetch_map(make, items, self.prefetch)

    def __iter__(self) -> Iterator:
        """Batches of the current epoch from ``step``; advances like :class:`GraphLoader`."""
        epoch, start = self.epoch, self.step
        for k, batch in enumerate(self.epoch_batches(epoch, start), start=start):
            self.step = k + 1
            yield batch
        self.epoch, self.step = epoch + 1, 0


def greedy_caps(
    n_nodes: np.ndarray, n_edges: np.ndarray, edge_budget: int, multiple: int = 64
) -> tuple[int, int, int]:
    """``(N, E, G)`` budgets for budget-driven batching: pack the structures in the given
    order into batches of at most ``edge_budget`` edges (greedy, first fit in sequence) and
    take the largest node and graph totals of a batch (+1 padding each; N, E rounded up)."""
    e_b = round_up(int(edge_budget), multiple)
    if int(np.max(n_edges)) > e_b:
        raise DataError(
            f"edge_budget {edge_budget}: a structure has {int(np.max(n_edges))} edges; "
            "raise the budget"
        )
    most_n = most_g = cn = ce = cg = 0
    for ni, ei in zip(n_nodes.tolist(), n_edges.tolist()):
        if cg and ce + ei > e_b:
            most_n, most_g = max(most_n, cn), max(most_g, cg)
            cn = ce = cg = 0
        cn, ce, cg = cn + ni, ce + ei, cg + 1
    most_n, most_g = max(most_n, cn), max(most_g, cg)
    return round_up(most_n + 1, multiple), e_b, most_g + 1


class _KnownEdges(NeighborCache):
    """A :class:`NeighborCache` that hands out the neighbour lists read from the shards."""

    def __init__(self, cutoff: float, edges: dict):
        super().__init__(cutoff)
        self._known = edges

    def get(self, s):
        return self._known[id(s)]

    def compute(self, structures):
        return [self._known[id(s)] for s in structures]


class _Reader:
    """Hands out ``(Structure, edges)`` for the batches of one epoch, in order.

    ``by_shard``: each shard is read once, whole, when a batch first needs one of its
    structures; the structures the plan still needs are held until taken (``peak`` counts
    them). Otherwise structures are read one by one.
    """

    def __init__(self, shards: ShardSet, batches, by_shard: bool):
        self.shards, self.by_shard, self.peak = shards, by_shard, 0
        self.pending: dict[int, tuple] = {}
        if not by_shard or not batches:
            return
        needed = np.concatenate(batches)
        shard = shards.shard_of(needed)
        _, first = np.unique(shard, return_index=True)
        self.queue = deque(int(k) for k in shard[np.sort(first)])
        self.need = {k: np.sort(needed[shard == k] - shards.offsets[k]) for k in set(self.queue)}

    def take(self, idx) -> list[tuple]:
        if not self.by_shard:
            return [(s, e) for _, s, e in self.shards.read_items(idx)]
        out = []
        for g in (int(i) for i in idx):
            while g not in self.pending:
                k = self.queue.popleft()
                for gi, s, e in self.shards.read(k, self.need.pop(k)):
                    self.pending[gi] = (s, e)
            out.append(self.pending.pop(g))
        self.peak = max(self.peak, len(self.pending) + len(out))
        return out
