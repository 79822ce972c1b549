"""Processes started by torchrun: the process group, which scenes are whose, and errors every process agrees on.

train.py uses :class:`Dist` for DistributedDataParallel; test.py for sharing scenes among processes. Without
torchrun (``WORLD_SIZE`` unset or 1) nothing is started and every helper is the one-process identity.
"""
from __future__ import annotations

import atexit
import gc
import os
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

from utils.device import DeviceError, pick_device
from utils.errors import FerdError

T = TypeVar("T")


class PeerError(FerdError):
    """An input error found by one process, raised on every process so that all stop alike (its message is
    the original one line)."""


def launched_rank() -> int:
    """This process's rank as torchrun set it (0 without torchrun), known before any process group exists:
    only rank 0 prints the option errors every process finds alike."""
    return int(os.environ.get("RANK", "0"))


def check_gpu_count(per_node: int) -> None:
    """One CUDA device per process of this node, found alike by every process (so only rank 0 need say it)."""
    have = torch.cuda.device_count()
    if per_node > have:
        raise DeviceError(f"torchrun started {per_node} processes on this node, which has {have} CUDA device(s): "
                          f"use --nproc_per_node {have}, or --device cpu")


def hold_nothing_of_ours() -> None:
    """Import ``torch._dynamo`` before the process group exists.

    Why: imported after ``init_process_group`` (torchvision imports it, so every FEN does), torch 2.14's dynamo
    keeps 10 references to the default group that nothing gives back; the group then outlives
    ``destroy_process_group`` and its gloo threads run on into Python's shutdown. One of them may drop the
    last gather's tensors then, and a thread that asks for the GIL of a finalizing interpreter is ended
    mid-destructor: "terminate called without an active exception", SIGABRT, a torchrun exit code 1 after
    every file was written (1 run in 30 to 150 of tests/test_unlabelled.py's torchrun case here; seen in CI).
    Imported first, dynamo holds nothing of ours and :meth:`Dist.close` joins the group's threads.
    tests/test_torchrun.py checks it.
    """
    import torch._dynamo  # noqa: F401


class Dist:
    """The process group, if started by torchrun (``WORLD_SIZE`` > 1); rank 0 evaluates and saves.

    Each process runs on ``cuda:LOCAL_RANK`` (NCCL) when CUDA is used, else on the CPU (gloo). A context
    manager: leaving it, every process waits for the others (none tears the group down while a peer still
    has a collective in flight), then the group is destroyed and its threads joined if this Dist made it
    (:meth:`close`). A group that exists already (made by the caller, or :func:`process_dist`) is used as it is.
    """

    def __init__(self, device_arg: str | None) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.owned = False  # whether close() destroys the group (not one made by the caller or an earlier call)
        if self.world == 1:
            self.device = pick_device(device_arg)
            return
        cpu = pick_device(device_arg).type == "cpu"
        if dist.is_initialized():  # made before, by the caller or an earlier library call: used, never destroyed
            self.device = torch.device("cpu") if dist.get_backend() == "gloo" else torch.device("cuda", local)
            if (self.device.type == "cpu") != cpu:
                raise DeviceError(f"device={device_arg!r}, but this process's group runs on {self.device.type} "
                                  f"({dist.get_backend()}); under torchrun one process keeps one device")
            return
        if cpu:
            self.device = torch.device("cpu")
        else:
            check_gpu_count(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
            self.device = torch.device("cuda", local)
            torch.cuda.set_device(self.device)
        hold_nothing_of_ours()
        if cpu:
            dist.init_process_group("gloo")
        else:  # NCCL told its device up front: barrier() then knows it (else every barrier warns and guesses)
            dist.init_process_group("nccl", device_id=self.device)
        self.owned = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t = t / self.world
        return t

    def shard(self, n: int) -> list[int]:
        """The indices of ``n`` items (scenes) this process takes: every ``world``-th from its rank. No padding
        and no item twice (unlike ``DistributedSampler``), so means over the gathered items stay true."""
        return list(range(self.rank, n, self.world))

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every process, by rank (any picklable object; ``[obj]`` for one process)."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def gather_to_main(self, obj: Any) -> list[Any] | None:
        """``obj`` of every process, by rank, on rank 0 only (None elsewhere): for what only rank 0 writes."""
        if self.world == 1:
            return [obj]
        out: list[Any] | None = [None] * self.world if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def settle(self, fn: Callable[[], T]) -> T:
        """``fn()`` on every process, then agree: if it raised a :class:`FerdError` on any process, every process
        raises :class:`PeerError` with the message of the lowest such rank (one process: the error itself).

        A collective, so every process must call it at the same point; between two calls a process that fails
        stops its own work only, and the others learn of it at the next call.
        """
        if self.world == 1:
            return fn()
        value, message = None, None
        try:
            value = fn()
        except FerdError as err:
            message = str(err)
        failed = [m for m in self.gather(message) if m is not None]
        if failed:
            raise PeerError(failed[0])
        return value

    def close(self) -> None:
        """Destroy the process group (its gloo or NCCL threads end here, not during Python's shutdown)."""
        if self.owned and dist.is_initialized():
            self.owned = False
            gc.collect()  # a finished DistributedDataParallel model, held in a reference cycle, holds the group too
            dist.destroy_process_group()

    def __enter__(self) -> Dist:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            # a clean end, or an error every process raised alike, waits for the others; after any other error
            # the peers may never come
            if kind is None or issubclass(kind, PeerError):
                self.barrier()
        finally:
            self.close()


def process_dist(device_arg: str | None) -> Dist:
    """The :class:`Dist` of library calls made without one (``evaluate(settings)``, ``train(settings)``).

    Under torchrun, the process's group: made at the first call (or by the caller) and used by every later one,
    and one made here is ended when Python exits, in an ``atexit`` handler (gloo's threads must end while the
    interpreter still lets them take the GIL). Not one group per call: a second group in one process meets the
    first one's keys in torchrun's store and may connect to a peer's closed socket, or wait forever.
    """
    d = Dist(device_arg)
    if d.owned:
        atexit.register(d.close)
    return d


class Share:
    """One evaluation's scenes shared among torchrun's processes, and the collectives on them: each process
    :meth:`take` s every ``world``-th scene from its rank; :meth:`settle` runs a step that every process agrees
    on (an input error on one stops all); :meth:`everyone` and :meth:`to_main` gather each process's lists back
    in input order. In one process every call is the identity (or the call itself)."""

    def __init__(self, d: Dist) -> None:
        self.d = d
        self.indices: list[int] = []

    @property
    def is_main(self) -> bool:
        return self.d.is_main

    def take(self, n: int) -> list[int]:
        """The indices of the ``n`` scenes this process takes (all of them in one process)."""
        self.indices = self.d.shard(n)
        return self.indices

    def settle(self, fn: Callable[[], T]) -> T:
        return self.d.settle(fn)

    def everyone(self, items: list) -> list:
        """The items of every process (one per taken scene), in input order, on every process."""
        return _in_order(self.d.gather((self.indices, items)))

    def to_main(self, *columns: list) -> tuple[list, ...] | None:
        """Each of ``columns`` (lists, one item per taken scene, or empty) of every process, in input order, on
        rank 0; None on the other ranks."""
        parts = self.d.gather_to_main((self.indices, columns))
        if parts is None:
            return None
        return tuple(_in_order([(indices, cols[k]) for indices, cols in parts]) for k in range(len(columns)))

    def pooled(self, items: list) -> list | None:
        """The lists ``items`` of every process, one after the other by rank, on rank 0; None elsewhere."""
        parts = self.d.gather_to_main(items)
        return None if parts is None else [item for part in parts for item in part]


def _in_order(parts: list[tuple[list[int], list]]) -> list:
    """The items of every process's ``(indices, items)``, back in input order (an empty ``items``: none)."""
    pairs = [(i, item) for indices, items in parts for i, item in zip(indices, items)]
    return [item for _, item in sorted(pairs, key=lambda pair: pair[0])]
