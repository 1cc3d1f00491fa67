"""Jitted SPMD train and eval steps over a 1-D device mesh (data parallelism).

Layout. A step consumes ``D`` padded sub-batches of identical budgets stacked along a leading
device axis (``Graph`` leaves of shape ``[D, ...]``, see :func:`stack_batches`), sharded with
``NamedSharding(mesh, P("data"))`` so that device ``d`` holds sub-batch ``d``; the train state
is replicated (``P()``). Inside the step the model runs under ``vmap`` over the device axis; the
loss is the *global* masked mean (per-term sums and counts are summed over the device axis
before dividing, :func:`tace_jax.train.loss.combine_loss`), so the gradient equals that of one
big batch. ``jit`` inserts the cross-device reductions; there is no ``pmap`` and no hand-written
collective. With one device the same code runs with ``D = 1``.

Multi-host start-up (several processes, e.g. one per GPU node)::

    import jax
    jax.distributed.initialize()       # coordinator address etc. from the cluster environment
                                       # (SLURM/Open MPI/TPU are auto-detected), or pass
                                       # coordinator_address="host0:1234", num_processes=P,
                                       # process_id=i explicitly
    from tace_jax.train import fit
    fit(config)                        # same config on every process

After ``initialize``, ``jax.devices()`` lists the devices of all processes and the mesh spans
them; each process builds only its local sub-batches (``D_local = jax.local_device_count()``),
and :func:`shard_batch` assembles the global array with
``jax.make_array_from_process_local_data``. Every process must iterate the same number of steps
(the loader's plan is a function of ``(seed, epoch)`` only; each process takes its own slice of
every step's sub-batches). Checkpoints are written collectively by orbax; point ``output_dir``
at a shared file system.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from tace_jax.data.graph import Graph

from .ema import ema_update
from .loss import LossConfig, combine_loss, loss_sums
from .loss_response import (
    hessian_key,
    required_properties,
    sample_hessian_rows,
    term_predictions,
)
from .optimizer import set_learning_rate
from .state import TrainState

__all__ = [
    "empty_like",
    "group_batches",
    "make_eval_step",
    "make_mesh",
    "make_train_step",
    "shard_batch",
    "stack_batches",
]


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D ``("data",)`` mesh over the first ``num_devices`` devices (default: all)."""
    devices = jax.devices()
    n = len(devices) if num_devices is None else int(num_devices)
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices={num_devices} but {len(devices)} devices are available")
    return Mesh(np.asarray(devices[:n]), ("data",))


def stack_batches(batches: Sequence[Graph]) -> Graph:
    """Stack equally padded batches along a new leading (device) axis (numpy leaves)."""
    shapes = {b.budgets for b in batches}
    if len(shapes) != 1:
        raise ValueError(f"sub-batches must share budgets to be stacked, got {sorted(shapes)}")
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *batches)


def empty_like(batch: Graph) -> Graph:
    """A batch of the same shapes with nothing real in it (all masks off, zero weights).

    Used to fill the last step of an epoch when fewer than ``D`` sub-batches remain.
    """
    targets = {}
    for k, v in batch.targets.items():
        v = np.asarray(v)
        targets[k] = np.zeros_like(v) if (k == "weight" or k.startswith("has_")) else v
    return batch.replace(
        node_mask=np.zeros_like(np.asarray(batch.node_mask)),
        edge_mask=np.zeros_like(np.asarray(batch.edge_mask)),
        graph_mask=np.zeros_like(np.asarray(batch.graph_mask)),
        targets=targets,
    )


def group_batches(batches: Iterable[Graph], num: int) -> Iterator[tuple[Graph, int]]:
    """Yield ``(stacked [num, ...] batch, number of real sub-batches)`` groups.

    A final incomplete group is filled with :func:`empty_like` batches.
    """
    group: list[Graph] = []
    for b in batches:
        group.append(b)
        if len(group) == num:
            yield stack_batches(group), num
            group = []
    if group:
        n_real = len(group)
        group += [empty_like(group[0])] * (num - n_real)
        yield stack_batches(group), n_real


def shard_batch(stacked: Graph, mesh: Mesh) -> Graph:
    """Place a stacked batch on the mesh, device axis split along ``"data"``.

    ``stacked`` holds all ``D`` sub-batches of the step (every process builds the same
    ones). With several processes each one keeps the slice of its local devices and the global
    array is assembled with ``jax.make_array_from_process_local_data``.
    """
    sharding = NamedSharding(mesh, P("data"))
    if jax.process_count() == 1:
        return jax.device_put(stacked, sharding)
    n_local = len([d for d in mesh.devices.flat if d.process_index == jax.process_index()])
    first = [d.process_index for d in mesh.devices.flat].index(jax.process_index())
    local = jax.tree.map(lambda x: np.asarray(x)[first : first + n_local], stacked)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local)


def _per_batch_fn(apply_fn, properties, training):
    """``(variables, graph) -> predictions`` of ``properties`` (loss-term names allowed: the
    response terms are translated by :func:`~tace_jax.train.loss_response.required_properties`
    for the batch, which tells a field model by its ``electric_field`` input)."""
    from tace_jax.properties import compute_properties

    def fn(variables, graph):
        props = required_properties(properties, graph)
        return compute_properties(apply_fn, variables, graph, props, training=training)

    return fn


def _batch_loss_fn(apply_fn, per_batch, loss_cfg: LossConfig):
    """``(variables, graph, key) -> (predictions, loss sums)``; samples Hessian rows when the
    ``hessian`` term is active (``key``: their PRNG key)."""
    use_rows = "hessian" in loss_cfg.active

    def fn(variables, graph, key):
        pred = per_batch(variables, graph)
        rows = None
        if use_rows:
            rows = sample_hessian_rows(apply_fn, variables, graph, key, loss_cfg.hessian_samples)
        return pred, loss_sums(pred, graph, loss_cfg, rows)

    return fn


def make_train_step(
    apply_fn: Callable,
    optimizer: optax.GradientTransformation,
    loss_cfg: LossConfig,
    schedule: Callable,
    mesh: Mesh,
    properties: Sequence[str] = ("energy", "forces"),
    ema_decay: float | None = 0.995,
    donate: bool = True,
) -> Callable[[TrainState, Graph], tuple[TrainState, dict]]:
    """Build ``train_step(state, stacked_batch) -> (state, metrics)`` (jitted, SPMD).

    Args:
        apply_fn: ``apply_fn(variables, graph, edge_vecs=None) -> dict`` (e.g. ``TACE.apply``).
        optimizer: from :func:`tace_jax.train.optimizer.make_optimizer`.
        loss_cfg: loss settings.
        schedule: ``step -> base learning rate``; multiplied by ``state.lr_scale``.
        mesh: 1-D ``("data",)`` mesh; the batch's leading axis must equal its size.
        properties: what :func:`tace_jax.properties.compute_properties` must predict.
        ema_decay: EMA decay (None: EMA params track the params).
        donate: donate the input state buffers.

    Returns:
        The jitted step. ``metrics`` holds ``loss``, ``lr``, ``grad_norm`` and the summed loss
        terms/error statistics of :func:`tace_jax.train.loss.loss_sums` (replicated scalars).
    """
    per_batch = _per_batch_fn(apply_fn, tuple(properties), True)
    batch_loss = _batch_loss_fn(apply_fn, per_batch, loss_cfg)

    def step(state: TrainState, batch: Graph):
        d = jax.tree.leaves(batch)[0].shape[0]
        keys = jax.random.split(hessian_key(state.step), d)

        def loss_fn(params):
            variables = {**state.constants, "params": params}
            sums = jax.vmap(lambda g, k: batch_loss(variables, g, k)[1])(batch, keys)
            sums = jax.tree.map(lambda x: jnp.sum(x, axis=0), sums)
            return combine_loss(sums, loss_cfg), sums

        (loss, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        lr = (schedule(state.step) * state.lr_scale).astype(state.lr_scale.dtype)
        opt_state = set_learning_rate(state.opt_state, lr)
        updates, opt_state = optimizer.update(grads, opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_step = state.step + 1
        ema = ema_update(state.ema_params, params, new_step, ema_decay)
        new_state = state.replace(step=new_step, params=params, ema_params=ema, opt_state=opt_state)
        metrics = {**sums, "loss": loss, "lr": lr, "grad_norm": optax.global_norm(grads)}
        return new_state, metrics

    repl = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P("data"))
    return jax.jit(
        step,
        in_shardings=(repl, data),
        out_shardings=(repl, repl),
        donate_argnums=(0,) if donate else (),
    )


def make_eval_step(
    apply_fn: Callable,
    loss_cfg: LossConfig,
    mesh: Mesh,
    properties: Sequence[str] = ("energy", "forces"),
) -> Callable[[dict, Graph], tuple[dict, dict]]:
    """Build ``eval_step(variables, stacked_batch) -> (predictions [D, ...], loss sums)``.

    Predictions contain the requested ``properties`` (no second-order graph); a response loss
    term among them (e.g. ``dipole``) is its prediction in the label's units
    (:func:`~tace_jax.train.loss_response.term_predictions`). Loss sums are those of
    :func:`tace_jax.train.loss.loss_sums` summed over the device axis.
    """
    per_batch = _per_batch_fn(apply_fn, tuple(properties), False)
    batch_loss = _batch_loss_fn(apply_fn, per_batch, loss_cfg)

    def step(variables, batch):
        variables = jax.lax.stop_gradient(variables)
        d = jax.tree.leaves(batch)[0].shape[0]
        keys = jax.random.split(hessian_key(0), d)
        pred, sums = jax.vmap(lambda g, k: batch_loss(variables, g, k))(batch, keys)
        pred = jax.vmap(lambda p, g: {**p, **term_predictions(properties, p, g)})(pred, batch)
        pred = {k: v for k, v in pred.items() if k in properties}
        return pred, jax.tree.map(lambda x: jnp.sum(x, axis=0), sums)

    repl = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P("data"))
    pred_out = data if jax.process_count() == 1 else repl  # multi-host: readable everywhere
    return jax.jit(step, in_shardings=(repl, data), out_shardings=(pred_out, repl))
