"""torch.distributed, when launched by torchrun: gloo on CPU, NCCL on GPU; a no-op otherwise."""

from __future__ import annotations

import atexit
import logging
import os

import torch
import torch.distributed as dist


def init_from_env(device: torch.device) -> None:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1).

    The backend follows the device training runs on: NCCL for CUDA, gloo otherwise (a CPU run on a
    GPU machine too). Ranks other than 0 then log errors only.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        atexit.register(leave)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        if not is_main():
            # every rank runs the same code, so its notes and warnings would repeat once per process; rank 0
            # speaks for all, as it alone writes (errors still show: a rank that fails says why)
            logging.getLogger().setLevel(logging.ERROR)


def leave() -> None:
    """Destroy the process group while the interpreter is still whole (registered at exit by ``init_from_env``).

    Left to interpreter teardown, gloo's worker threads can still hold work whose tensors need the GIL,
    and the process aborts (SIGABRT, "terminate called without an active exception"; pytorch#179291):
    a torchrun run that had finished its work failed, under load, in one of ~15 test runs.
    """
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def agree(flag: bool, device: torch.device) -> bool:
    """Rank 0's decision, for every rank: collectives deadlock if ranks choose different paths."""
    if not dist.is_initialized():
        return flag
    decision = torch.tensor([float(flag)], device=device)
    dist.broadcast(decision, src=0)
    return bool(decision.item())


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every rank's parameters and buffers equal to rank 0's (after a rank-0 decision changed them)."""
    if dist.is_initialized():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def local_device(device: torch.device) -> torch.device:
    """Under torchrun on GPUs each rank takes its own card."""
    if device.type == "cuda" and dist.is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device
