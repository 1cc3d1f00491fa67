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

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

__all__ = ["device_prefetch"]

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


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
    if size <= 0:
        for first, *rest in items:
            yield (place(first), *rest)
        return
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def worker():
        try:
            for first, *rest in items:
                if not put((place(first), *rest)):
                    return
        except BaseException as e:  # handed to the caller
            put(_Failed(e))
            return
        put(_DONE)

    thread = threading.Thread(target=worker, name="tace-device-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)
