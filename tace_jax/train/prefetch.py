"""Device prefetch: place the next training batches on the devices while the current step runs.

The loaders build host batches in a background thread (:class:`tace_jax.data.GraphLoader`,
:class:`tace_jax.data.StreamingLoader`); :func:`device_prefetch` adds a second stage that stacks
the step's sub-batches and transfers them to the mesh (``jax.device_put`` /
``jax.make_array_from_process_local_data``) ahead of time, so that the host-to-device copy of
step k+1 overlaps the compute of step k on an accelerator (docs/theory.md §5: training).
The order of the batches is unchanged, so the trained parameters are exactly those without
prefetch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from tace_jax.data.loader import prefetch_map

__all__ = ["device_prefetch"]

_THREAD = "tace-device-prefetch"


def device_prefetch(items: Iterable, place: Callable, size: int = 2) -> Iterator:
    """Yield ``(place(a), *rest)`` for each tuple ``(a, *rest)`` of ``items``, with up to
    ``size`` of them prepared ahead in a background thread.

    Args:
        items: an iterable of tuples whose first element is to be placed (e.g. the stacked
            batch of a step and its number of real sub-batches).
        place: the transfer (e.g. :func:`tace_jax.train.distributed.global_batch`).
        size: how many placed items may wait (0: no thread, place in the caller).

    An exception in the thread (in ``items`` or ``place``) is raised in the caller at the item
    where it happened; closing the generator early (``break``, an exception in the caller)
    stops the thread.
    """

    def place_item(item):
        return (place(item[0]), *item[1:])

    if size <= 0:
        return (place_item(item) for item in items)
    return prefetch_map(place_item, items, size, _THREAD)
