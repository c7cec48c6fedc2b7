"""Data-parallel training over several processes (several GPUs of one server), started by
``torchrun --nproc_per_node N -m medvision.cli train ...``.

Every process holds the whole network and all the training data; each draws its own patches (its
sampler seeded apart from the others'), and an epoch's patches are shared among them, so N GPUs
do an epoch about N times faster. After every backward pass the gradients are averaged over the
processes (one all-reduce of one flat buffer, what DistributedDataParallel does; done by hand so
that frozen layers and the networks' own logits functions need nothing special), and every process
steps its optimizer on the same gradients: the weights stay identical, which :meth:`Group.check_same`
verifies at the end. Process 0 alone fits the probe, validates, writes the checkpoints and the
package and reports progress; what the others need of its decisions (the learning-rate horizon,
when to stop, the head it fitted) it broadcasts. Norm layers' running statistics are taken from
process 0 after each epoch.

Without torchrun (``WORLD_SIZE`` unset or 1) :class:`Group` is one process and every call is a no-op.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = ["Group", "end"]

#: how long a process waits in a collective call: the others wait while process 0 alone fits the
#: probe, validates (on a large image, with the CPU-stitching fallback) or writes the package
TIMEOUT = timedelta(hours=3)


class Group:
    """The processes of one training (``world`` of them; this one is ``rank``)."""

    def __init__(self, rank: int = 0, world: int = 1) -> None:
        self.rank, self.world = int(rank), int(world)

    @classmethod
    def from_environment(cls, device: str) -> Group:
        """The group torchrun started this process in (its process group set up here when needed:
        NCCL on CUDA, gloo on the CPU), or a group of one."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1 or not (os.environ.get("TORCHELASTIC_RUN_ID") or os.environ.get("MASTER_ADDR")):
            return cls()  # (a WORLD_SIZE left in the environment by something else is not torchrun)
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device == "cuda" else "gloo", timeout=TIMEOUT)
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world > 1

    def share(self, count: int) -> int:
        """This process's part of ``count`` things (patches of an epoch): the count over the processes, rounded up."""
        return -(-int(count) // self.world)

    def average_gradients(self, parameters) -> None:
        """Every process's gradients replaced by their mean over the processes."""
        if not self.several:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset: offset + g.numel()].view_as(g))
            offset += g.numel()

    def mean(self, value: float) -> float:
        """``value``'s mean over the processes (a loss to report)."""
        if not self.several:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._device())
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def broadcast_module(self, net: torch.nn.Module, buffers_only: bool = False) -> None:
        """Process 0's weights (or only its buffers: norm statistics) in every process."""
        if not self.several:
            return
        with torch.no_grad():
            for t in [*([] if buffers_only else net.parameters()), *net.buffers()]:
                dist.broadcast(t.data, src=0)

    def broadcast(self, value):
        """Process 0's ``value`` (anything picklable) in every process."""
        if not self.several:
            return value
        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0, device=self._device() if self._device().type == "cuda" else None)
        return box[0]

    def check_same(self, net: torch.nn.Module) -> None:
        """Raise when the processes' weights differ (they must not: they step on the same gradients)."""
        if not self.several:
            return
        with torch.no_grad():
            total = sum(float(p.detach().double().abs().sum()) for p in net.parameters())
        t = torch.tensor([total, total], dtype=torch.float64, device=self._device())
        low, high = t[:1].clone(), t[1:].clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if float(high - low) > 1e-6 * max(1.0, abs(float(high))):
            raise RuntimeError(f"the training processes' weights differ ({float(low):.6g} against {float(high):.6g}): "
                               "the data-parallel run is not consistent")

    def _device(self) -> torch.device:
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


def end(finished: bool = False) -> None:
    """End this process's process group, if it has one (at the end of a torchrun training).

    After a training that ``finished`` in every process, the processes first wait for each other
    (process 0 writes the package while the others are done): a process that tore its group down
    while another still used its connections died at exit now and then (gloo, SIGABRT). After a
    failure nobody waits: torchrun ends the others."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if finished and dist.get_world_size() > 1:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=TIMEOUT)
        else:
            dist.barrier()
    dist.destroy_process_group()
