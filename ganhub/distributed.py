"""Multi-process training on torch.distributed, launched by torchrun: one model trained by K processes.

The loop stays a plain single-process loop plus four calls, as stylegan2-ada/stylegan3 do it (no DDP
wrapper, so plugins need nothing): `broadcast_module` once at the start (identical weights and buffers
on every rank), `average_grads` after every backward (ONE flattened all_reduce), `any_rank` to agree on
stop and divergence, and `gather_rng`/`set_rng` so each rank's RNG is checkpointed and restored.
The same code runs on NCCL (CUDA) and gloo (CPU, MPS); every call is a no-op when `world.size == 1`.

    torchrun --nproc-per-node 2 -m ganhub.cli train dcgan --data fashion-mnist --steps 1000 --out runs/x
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from ganhub.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0  # global rank of this process, 0..size-1
    size: int = 1  # number of processes (GPUs) training the one model
    local_rank: int = 0  # rank on this machine: the CUDA device index

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run folder and yields progress."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer; launch with torchrun") from None


def init() -> World:
    """The World this process belongs to; joins the process group under torchrun (idempotent).

    Backend: nccl when CUDA is available (each rank takes cuda:LOCAL_RANK), gloo otherwise.
    Not launched by torchrun (no WORLD_SIZE, or WORLD_SIZE=1): World(), nothing initialised.
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return World()
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; run one process (plain `ganhub train`)")
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    try:
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl", rank=rank, world_size=size, device_id=torch.device("cuda", local_rank))
        else:
            dist.init_process_group("gloo", rank=rank, world_size=size)
    except (ValueError, RuntimeError) as e:  # e.g. WORLD_SIZE set by hand, without torchrun's MASTER_ADDR/PORT
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot join the process group of WORLD_SIZE={size} ({reason}); launch with "
                          f"`torchrun --nproc-per-node {size} -m ganhub.cli ...`, or unset WORLD_SIZE") from None
    return World(rank, size, local_rank)


def _comm_device(world: World) -> torch.device:
    """Where collectives run: the rank's GPU for nccl, the CPU for gloo."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", world.local_rank)
    return torch.device("cpu")


def _grouped(tensors: list[torch.Tensor]) -> dict[tuple[torch.dtype, torch.device], list[int]]:
    """Indices of `tensors` by (dtype, device): one flat buffer per group (usually a single group)."""
    groups: dict[tuple[torch.dtype, torch.device], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.dtype, t.device), []).append(i)
    return groups


@torch.no_grad()
def broadcast_module(module: nn.Module, world: World) -> None:
    """Copy rank 0's parameters AND buffers into every rank (one flattened broadcast per dtype)."""
    if world.size <= 1:
        return
    tensors = [t for t in (*module.parameters(), *module.buffers()) if t.numel() > 0]
    comm = _comm_device(world)
    for idx in _grouped(tensors).values():
        group = [tensors[i] for i in idx]
        flat = _flatten_dense_tensors([t.detach() for t in group]).to(comm)
        torch.distributed.broadcast(flat, src=0)
        for t, v in zip(group, _unflatten_dense_tensors(flat.to(group[0].device), group)):
            t.copy_(v)


@torch.no_grad()
def average_grads(module: nn.Module, world: World) -> None:
    """Average the gradients of `module`'s parameters over all ranks with ONE flattened all_reduce.

    A parameter whose .grad is None on some ranks counts as a zero gradient there; if it is None on
    every rank it stays None (so the optimiser skips it, as in a single process). A "has a gradient"
    flag per parameter rides in the same buffer to decide that consistently on all ranks.
    (Parameters of several dtypes or devices take one all_reduce per kind; a model normally has one.)
    """
    if world.size <= 1:
        return
    params = [p for p in module.parameters() if p.numel() > 0]
    if not params:
        return
    comm = _comm_device(world)
    for idx in _grouped(params).values():
        group = [params[i] for i in idx]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in group]
        flags = torch.tensor([p.grad is not None for p in group], dtype=group[0].dtype, device=group[0].device)
        flat = _flatten_dense_tensors([*grads, flags]).to(comm)
        torch.distributed.all_reduce(flat)  # sum over ranks
        flat = flat.to(group[0].device)
        *summed, has_grad = _unflatten_dense_tensors(flat, [*grads, flags])
        for p, g, any_grad in zip(group, summed, has_grad.tolist()):
            if not any_grad:
                continue
            g.div_(world.size)
            if p.grad is None:
                p.grad = torch.empty_like(p).copy_(g)  # the parameter's own memory layout
            else:
                p.grad.copy_(g)


def any_rank(flag: bool, world: World) -> bool:
    """True on every rank if `flag` is True on any rank (stop requested, loss not finite, ...)."""
    if world.size <= 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=_comm_device(world))
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    """The elementwise sum of `t` over all ranks (a new tensor on t's device; `t` itself is left as it was)."""
    if world.size <= 1:
        return t.clone()
    out = t.to(_comm_device(world), copy=True)
    torch.distributed.all_reduce(out)
    return out.to(t.device)


def barrier(world: World) -> None:
    """Wait until every rank gets here (e.g. rank 0 prepared the dataset; the others may now read it)."""
    if world.size <= 1:
        return
    if torch.distributed.get_backend() == "nccl":
        torch.distributed.barrier(device_ids=[world.local_rank])
    else:
        torch.distributed.barrier()


def _local_rng(device: torch.device | None) -> dict[str, torch.Tensor]:
    out = {"cpu": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    elif device is None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state()
    if device is not None and device.type == "mps":
        out["mps"] = torch.mps.get_rng_state()
    return out


def gather_rng(world: World, device: str | torch.device | None = None) -> list[dict[str, torch.Tensor]]:
    """Every rank's RNG states ({"cpu": ..., "cuda"/"mps": ...} uint8 tensors), in rank order.

    Collective: every rank must call it; every rank receives the list (rank 0 writes it to the
    checkpoint). `device` is the training device (its generator is included); default: CPU, plus
    the current CUDA device if CUDA is in use.
    """
    mine = _local_rng(torch.device(device) if device is not None else None)
    if world.size <= 1:
        return [mine]
    keys = sorted(mine)
    sizes = [mine[k].numel() for k in keys]
    flat = torch.cat([mine[k].flatten() for k in keys]).to(_comm_device(world))
    out = [torch.empty_like(flat) for _ in range(world.size)]
    torch.distributed.all_gather(out, flat)
    return [dict(zip(keys, (s.cpu().clone() for s in t.split(sizes)))) for t in out]


def set_rng(states: list[dict[str, torch.Tensor]], world: World, device: str | torch.device | None = None) -> None:
    """Restore this rank's own RNG states from `states` (as gather_rng returned them, one per rank).

    A checkpoint written by another number of processes is refused: its ranks drew other latents.
    A generator the checkpoint has but this machine lacks (resuming a CUDA run on CPU) is skipped.
    """
    if len(states) != world.size:
        raise ConfigError(
            f"the checkpoint was written by {len(states)} process(es) but this run has {world.size}; "
            f"resume with the same number of processes (torchrun --nproc-per-node {len(states)}) or start a new run"
        )
    mine = states[world.rank]
    torch.set_rng_state(mine["cpu"])
    dev = torch.device(device) if device is not None else None
    if "cuda" in mine and torch.cuda.is_available() and (dev is None or dev.type == "cuda"):
        torch.cuda.set_rng_state(mine["cuda"], dev if dev is not None else "cuda")
    if "mps" in mine and dev is not None and dev.type == "mps":
        torch.mps.set_rng_state(mine["mps"])


def launcher_prefix(world: World) -> str:
    """How to launch the command that reproduces this run: same number of processes, same global batch."""
    if world.size > 1:
        return f"torchrun --nproc-per-node {world.size} -m ganhub.cli"
    return "ganhub"
