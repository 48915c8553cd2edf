"""torchrun support: the process group from torchrun's environment (NCCL on GPU, gloo on CPU); rank 0 alone writes."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vig.errors import UsageError
from vig.ranks import launch_rank


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self):
        return self.rank == 0

    @property
    def enabled(self):
        return self.world > 1


def pick_device(name=None, local_rank=0) -> torch.device:
    if name in (None, "auto"):
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    return dev


def init(device_name=None) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(launch_rank()), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, device)


def all_sum(values, d: Dist, device=None):
    """Sum a list of numbers over ranks (float64 so exact counts stay exact)."""
    t = torch.tensor(values, dtype=torch.float64, device=device or d.device)
    if d.enabled:
        dist.all_reduce(t)
    return t.tolist()


def barrier(d: Dist):
    if d.enabled:
        dist.barrier()


def shutdown(d: Dist):
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
