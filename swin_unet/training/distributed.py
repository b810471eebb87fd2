"""Process setup: the device, torchrun's process group, CPU threads, and cross-rank helpers.

A job may span several machines (torchrun ``--nnodes``): ``rank`` and ``world_size`` count
every process of the job, ``local_rank`` and ``local_world_size`` those of this machine
(``node_rank`` of ``num_nodes``). The GPU is the local rank's; the job's rank 0 writes the run
folder; slice caches are built per machine (local rank 0) or once per job (shared file system).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist

from ..errors import InputError
from ..evaluation.inference import resolve_device

__all__ = ["DistributedContext", "setup_distributed", "cleanup_distributed",
           "any_rank", "ranks_where", "gather_objects", "broadcast_object", "raise_first_error",
           "configure_cpu_threads", "configure_math", "math_settings", "restore_math_settings"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly one-process) job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")
    node_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 of the job: the process that writes checkpoints, logs and TensorBoard."""
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        """Local rank 0: the first process on this machine."""
        return self.local_rank == 0

    @property
    def num_nodes(self) -> int:
        """Machines in the job (torchrun starts the same number of processes on each)."""
        return max(1, self.world_size // max(1, self.local_world_size))

    @property
    def distributed(self) -> bool:
        """Whether a process group is in use."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def setup_distributed(device_name: str = "auto") -> DistributedContext:
    """Join torchrun's process group when its environment is set, else a one-process context.

    nccl on CUDA, gloo on CPU. Each process of a CUDA job uses GPU ``LOCAL_RANK``.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    local_world_size = _env_int("LOCAL_WORLD_SIZE", world_size)
    # torchrun's GROUP_RANK: the machine's number in the job (--node_rank, or rendezvous order).
    node_rank = _env_int("GROUP_RANK", 0)
    device = resolve_device(device_name, local_rank if world_size > 1 else 0)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                init_method="env://", rank=rank, world_size=world_size)
    return DistributedContext(rank=rank, local_rank=local_rank, world_size=world_size,
                              local_world_size=local_world_size, device=device,
                              node_rank=node_rank)


def cleanup_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def configure_cpu_threads(context: DistributedContext, requested: int = 0) -> int:
    """Set this process's CPU threads and return the count.

    ``requested`` > 0 is used as it is. Otherwise an explicit ``OMP_NUM_THREADS`` is respected
    (torchrun sets 1 when the user has not), else the cores are shared among the local
    processes: PyTorch would give every process all cores, and two processes on two cores
    would each run two threads and thrash.
    """
    if context.device.type != "cpu":
        return torch.get_num_threads()
    if requested > 0:
        threads = int(requested)
    elif os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    else:
        cores = os.cpu_count() or 1
        if hasattr(os, "sched_getaffinity"):
            cores = len(os.sched_getaffinity(0)) or cores
        threads = max(1, cores // context.local_world_size)
    torch.set_num_threads(threads)
    return threads


def configure_math(device: torch.device, deterministic: bool) -> str:
    """Set the process-wide numerics of a training run; returns one phrase for the log.

    On CUDA, float32 matmuls and convolutions run on tensor cores in TF32 (10-bit mantissa
    products, float32 accumulation) and cuDNN picks its fastest convolution per shape, unless
    ``deterministic``. ``deterministic`` (any device): cuBLAS with a fixed workspace
    (``CUBLAS_WORKSPACE_CONFIG``, read when cuBLAS starts, so set before the first CUDA
    matmul), cuDNN's deterministic algorithms, and an error, not a warning, from any operation
    that has no deterministic implementation.
    """
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic and device.type == "cuda"
    tf32 = device.type == "cuda" and not deterministic
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if deterministic:
        return ("deterministic algorithms (errors for non-deterministic operations), "
                f"CUBLAS_WORKSPACE_CONFIG={os.environ['CUBLAS_WORKSPACE_CONFIG']}, "
                "cuDNN benchmark off, TF32 off")
    return "TF32 matmuls and convolutions, cuDNN benchmark on" if tf32 else "float32 matmuls"


def math_settings() -> dict:
    """The process-wide settings :func:`configure_math` changes (train() restores them)."""
    return {"deterministic": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32}


def restore_math_settings(settings: dict) -> None:
    """Put back what :func:`math_settings` returned."""
    torch.use_deterministic_algorithms(settings["deterministic"])
    torch.backends.cudnn.deterministic = settings["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = settings["cudnn_benchmark"]
    torch.backends.cuda.matmul.allow_tf32 = settings["matmul_tf32"]
    torch.backends.cudnn.allow_tf32 = settings["cudnn_tf32"]


def any_rank(flag: bool, context: DistributedContext) -> bool:
    """True on every rank when ``flag`` is true on at least one (e.g. a Ctrl-C)."""
    if not context.distributed:
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int32,
                         device=context.device if context.device.type == "cuda" else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def ranks_where(flag: bool, context: DistributedContext) -> list[int]:
    """The ranks on which ``flag`` is true, on every rank (a collective in a distributed run)."""
    if not context.distributed:
        return [0] if flag else []
    flags = torch.zeros(context.world_size, dtype=torch.int32,
                        device=context.device if context.device.type == "cuda" else "cpu")
    flags[context.rank] = int(flag)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return [rank for rank, value in enumerate(flags.tolist()) if value]


def gather_objects(obj: Any, context: DistributedContext) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not context.distributed:
        return [obj]
    gathered: list = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, context: DistributedContext) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not context.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def raise_first_error(error: Optional[InputError], context: DistributedContext) -> None:
    """Raise on every rank the InputError of the lowest rank that had one (a collective).

    Every rank stops with the same one-line message rather than some waiting in the next
    collective for the ones that failed.
    """
    if not context.distributed:
        if error is not None:
            raise error
        return
    packed = None if error is None else (str(error), error.path, error.key, error.details)
    for item in gather_objects(packed, context):
        if item is not None:
            message, path, key, details = item
            raise InputError(message, path=path, key=key, details=details)
