"""DistributedDataParallel plumbing for ``torchrun``: process group setup and batch sharding.

``torchrun`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; without them everything here degrades
to a single process, so the same code path trains on one CPU or on many GPUs.
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from kutta.errors import InvalidArgumentError


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job. ``is_main`` is the only process that writes files."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> tuple[DistInfo, str]:
    """Join the ``torchrun`` process group if there is one (gloo on CPU, nccl on CUDA).

    Returns the process's place in the job and the device it should use (``cuda:LOCAL_RANK``
    on GPUs).

    Example:
        >>> info, device = init_distributed("cpu")  # outside torchrun: a single process
        >>> info.world_size, device
        (1, 'cpu')
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank), device


def shutdown_distributed() -> None:
    """Leave the process group (a no-op for single-process runs)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``value`` over all processes (``value`` itself for a single process)."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world_size


class BatchSchedule:
    """Which example indices this process trains on at each step; a pure function of the step.

    Every epoch is a seeded permutation (``DistributedSampler`` with ``drop_last``); process ``r``
    of ``W`` takes every W-th index, and its local batches of ``global_batch / W`` indices together
    form exactly the global batch a single process would use. Because batches depend only on
    (seed, step), a resumed run sees the same batches as an uninterrupted one.

    Example:
        >>> schedule = BatchSchedule(num_examples=10, global_batch=4, seed=0, info=DistInfo())
        >>> schedule.steps_per_epoch, len(schedule.indices(0))
        (2, 4)
    """

    def __init__(self, num_examples: int, global_batch: int, seed: int, info: DistInfo):
        if global_batch % info.world_size:
            raise InvalidArgumentError(
                f"train.batch_size ({global_batch}) must be divisible by the number of "
                f"processes ({info.world_size})"
            )
        if global_batch > num_examples:
            raise InvalidArgumentError(
                f"train.batch_size ({global_batch}) is larger than the number of training "
                f"examples ({num_examples})"
            )
        self.local_batch = global_batch // info.world_size
        self.sampler = DistributedSampler(
            range(num_examples),
            num_replicas=info.world_size,
            rank=info.rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        self.steps_per_epoch = len(self.sampler) // self.local_batch
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def indices(self, step: int) -> torch.Tensor:
        """Local example indices (a LongTensor on the CPU) for optimizer step ``step``."""
        epoch, position = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._epoch, self._order = epoch, torch.tensor(list(self.sampler), dtype=torch.long)
        return self._order[position * self.local_batch : (position + 1) * self.local_batch]
