"""Data-parallel training on CPU cores or GPUs with PyTorch's own engine (torch.distributed, DDP; gloo
between CPU processes, NCCL for the gradients of GPU ones).

Two ways in, one code path: ``torchrun --nproc-per-node N -m facegallery train ...`` sets the usual
environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), or ``facegallery train --procs N`` spawns the
N processes itself. On a 2-core laptop two one-thread processes, each on half the batch, train 9% faster
than one two-thread process (benchmarks/RESULTS.md, section 5).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # this process's place on its machine: which GPU it drives

    @property
    def main(self) -> bool:
        """Rank 0 validates, logs and writes checkpoints."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def broadcast(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every rank (decisions such as the step count or stopping)."""
        if self.size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.broadcast(t, 0)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (on every rank)."""
        if self.size == 1:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out


def join(backend: str = "gloo") -> World:
    """Join the process group described by the environment (torchrun's variables); a single process
    when WORLD_SIZE is unset or 1. ``backend`` "nccl": GPU tensors go over NCCL, the small CPU ones
    (decisions, RNG states) still over gloo, and each process drives the GPU of its LOCAL_RANK."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if size <= 1:
        return World()
    if backend == "nccl":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if backend == "nccl" else backend)
    return World(dist.get_rank(), dist.get_world_size(), local)


def leave(world: World) -> None:
    """Tear the process group down at the end of a run, once every rank has got there (a rank that
    tore its end down while rank 0 still wrote its checkpoint made gloo abort the other, SIGABRT, in 2
    of 4 runs of tests/test_distributed.py on an AVX-512 VM)."""
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, size: int, port: int, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(size),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    fn(*args)


def spawn(procs: int, fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn(*args)`` in ``procs`` local processes that form one process group (``fn`` and its
    arguments must be picklable). A failure in any process raises here."""
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(procs, _free_port(), fn, args), nprocs=procs, join=True)
