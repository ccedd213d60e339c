"""THE training loop: one function for every variant, plus checkpoints with exact resume.

`train()` owns devices, mixed precision, optimisers, the D/G schedule (n_critic), lazy regularisers,
the EMA of G, health checks, progress events and atomic checkpoints. Variants change training through
their loss and config only (stylegan2-ada's training_loop is the model).

Exact resume: data order is a pure function of (seed, epoch); every RNG state is checkpointed; sampling
for previews runs under a forked RNG. On CPU, N steps + resume to 2N equals 2N steps, bit for bit.
Multi-GPU: launch with `torchrun --nproc-per-node K -m ganhub.cli train ...`; gradients are averaged
by hand after each backward (as stylegan2-ada does) so plugins need no DDP wrapper; rank 0 writes.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ganhub import registry
from ganhub.data import ImageDataset, load_dataset
from ganhub.device import pick_device
from ganhub.errors import ConfigError, DatasetError, FolderError, TrainingDiverged
from ganhub.run import (
    CHECKPOINT,
    MODEL,
    SAMPLES,
    atomic_write,
    config_from_meta,
    load_state_strict,
    read_config,
    read_safetensors,
    save_generator,
)
from ganhub.sample import generate, latents, to_grid
from ganhub.variant import BaseConfig, Variant, build_models, make_config

log = logging.getLogger("ganhub.train")

PREVIEW_N = 64


@dataclass
class Event:
    kind: str  # "start" | "step" | "preview" | "checkpoint" | "warning" | "done"
    step: int
    total: int
    losses: dict[str, float] = field(default_factory=dict)
    images_per_s: float = 0.0
    elapsed: float = 0.0
    eta: float | None = None
    image: Image.Image | None = None
    message: str | None = None


# ---------------------------------------------------------------- checkpoint (de)serialisation
def _flatten_optimizer(prefix: str, opt: torch.optim.Optimizer, out: dict[str, torch.Tensor]) -> list:
    sd = opt.state_dict()
    for idx, state in sd["state"].items():
        for k, v in state.items():
            out[f"{prefix}.state.{idx}.{k}"] = v.detach().cpu().contiguous() if torch.is_tensor(v) else torch.tensor(v)
    return sd["param_groups"]


def _unflatten_optimizer(prefix: str, tensors: dict[str, torch.Tensor], groups: list) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if key.startswith(prefix + ".state."):
            idx, k = key[len(prefix) + 7 :].split(".", 1)
            state.setdefault(int(idx), {})[k] = v
    return {"state": state, "param_groups": groups}


def _rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    out = {"rng.cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["rng.cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        out["rng.mps"] = torch.mps.get_rng_state()
    return out


def _set_rng(tensors: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(tensors["rng.cpu"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    elif device.type == "mps" and "rng.mps" in tensors:
        torch.mps.set_rng_state(tensors["rng.mps"])


@dataclass
class _State:
    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    step: int = 0


def _save_checkpoint(folder: Path, s: _State, device: torch.device, extra: dict[str, Any]) -> None:
    from safetensors.torch import save as st_save

    tensors: dict[str, torch.Tensor] = {}
    for name, module in (("G", s.G), ("D", s.D), ("G_ema", s.G_ema)):
        for k, v in module.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().cpu().contiguous()
    groups_G = _flatten_optimizer("opt_G", s.opt_G, tensors)
    groups_D = _flatten_optimizer("opt_D", s.opt_D, tensors)
    tensors.update(_rng_tensors(device))
    meta = {"step": s.step, "opt_G_groups": groups_G, "opt_D_groups": groups_D, **extra}
    atomic_write(folder / CHECKPOINT, st_save(tensors, metadata={"ganhub": json.dumps(meta)}))


def _load_checkpoint(folder: Path, s: _State, device: torch.device) -> dict[str, Any]:
    from safetensors import safe_open

    path = folder / CHECKPOINT
    if not path.is_file():
        raise FolderError(f"{folder} has no {CHECKPOINT} to resume from; train without --resume")
    tensors = read_safetensors(path)
    with safe_open(str(path), "pt") as f:
        meta = json.loads((f.metadata() or {}).get("ganhub", "{}"))
    for name, module in (("G", s.G), ("D", s.D), ("G_ema", s.G_ema)):
        sd = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
        load_state_strict(module, sd, f"{path} [{name}]")
    s.opt_G.load_state_dict(_unflatten_optimizer("opt_G", tensors, meta["opt_G_groups"]))
    s.opt_D.load_state_dict(_unflatten_optimizer("opt_D", tensors, meta["opt_D_groups"]))
    _set_rng(tensors, device)
    s.step = int(meta["step"])
    return meta


# ---------------------------------------------------------------- helpers of the loop
class _Batches:
    """Real batches in an order that depends only on (seed, epoch, position): resumable by step."""

    def __init__(self, ds: ImageDataset, batch_size: int, seed: int, device: torch.device, rank: int = 0, world: int = 1):
        self.ds, self.bs, self.seed, self.device, self.rank, self.world = ds, batch_size, seed, device, rank, world
        self.position = 0  # batches drawn so far (by this rank)
        self._epoch, self._perm = -1, None

    def next(self) -> torch.Tensor:
        n = len(self.ds)
        per_epoch = max(1, n // (self.bs * self.world))
        epoch, i = divmod(self.position, per_epoch)
        if epoch != self._epoch:
            self._perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            self._epoch = epoch
        start = (i * self.world + self.rank) * self.bs
        idx = self._perm[start : start + self.bs]
        if len(idx) < self.bs:  # dataset smaller than a batch: wrap around
            idx = self._perm[torch.arange(start, start + self.bs) % n]
        self.position += 1
        return self.ds.batch(idx, self.device)


@torch.no_grad()
def _update_ema(G_ema: nn.Module, G: nn.Module, cfg: BaseConfig, images_seen: int) -> None:
    """EMA with a half-life in images (Karras et al. 2020, app. B), ramped up early in training."""
    if cfg.ema_half_life_kimg <= 0:
        beta = 0.0
    else:
        half_life = cfg.ema_half_life_kimg * 1000
        if cfg.ema_rampup > 0:
            half_life = min(half_life, images_seen * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch_size / max(half_life, 1e-8))
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.lerp_(p, 1.0 - beta)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


@torch.no_grad()
def recalibrate_batchnorm(G_ema: nn.Module, z_dim: int, device: torch.device, seed: int = 0, batches: int = 8) -> None:
    """Re-estimate BatchNorm statistics for the EMA weights (the copied running stats belong to G's
    weights, not the average's), as torch.optim.swa_utils.update_bn does for SWA. Fixed latents."""
    bns = [m for m in G_ema.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
        m.train()
    for i in range(batches):
        G_ema(latents(128, z_dim, seed * 7 + i).to(device))
    for m, (momentum, training) in zip(bns, saved):
        m.momentum = momentum
        m.train(training)


def _diversity(x: torch.Tensor) -> float:
    """Mean pairwise L2 distance within a batch: falls toward 0 when G collapses to few outputs."""
    flat = x.flatten(1).float()
    return torch.pdist(flat).mean().item() if len(flat) > 1 else 0.0


def _autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA GPUs that support it (no loss scaling needed, unlike fp16)."""
    if amp and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)


def default_command() -> str:
    argv = [os.path.basename(sys.argv[0])] + sys.argv[1:]
    out, skip = [], False
    for a in argv:  # never record a secret that came in through the command line
        out.append("***" if skip else a)
        skip = a in ("--token", "--hf-token")
    return " ".join(out)


# ---------------------------------------------------------------- the loop
def train(
    variant: str | Variant,
    *,
    dataset: str,
    steps: int,
    out: str | Path,
    seed: int = 0,
    batch_size: int | None = None,
    overrides: dict[str, Any] | None = None,
    device: str | None = None,
    resume: bool = False,
    preview_every: int | None = None,
    checkpoint_every: int | None = None,
    log_every: int = 1,
    stop: threading.Event | None = None,
    command: str | None = None,
    limit: int | None = None,
    amp: bool = True,
) -> Iterator[Event]:
    """Train `variant` on `dataset` up to `steps` G updates, writing the run folder `out`. Yields Events.

    `steps` is the total target of the run folder: with `resume=True` an existing folder continues up
    to it. `stop.set()` ends the run after the current step with a checkpoint; so does closing this
    generator early (a browser tab closing in the app, a `break` that drops it). Raises GanhubError
    subclasses for bad input and TrainingDiverged for NaN/inf losses (the last checkpoint is kept).
    """
    out = Path(out)
    if steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {steps}")
    overrides = dict(overrides or {})
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    if resume:
        meta = read_config(out)
        v = registry.get(meta["variant"])
        if isinstance(variant, Variant) and variant.name != v.name or isinstance(variant, str) and variant != v.name:
            raise ConfigError(f"{out} holds a {v.name!r} run, not {getattr(variant, 'name', variant)!r}; pick the right folder")
        cfg = config_from_meta(v, meta, out)
        changed = {k: val for k, val in make_config(v.config_cls, {**meta["config"], **overrides}).__dict__.items() if getattr(cfg, k) != val}
        if changed:
            raise ConfigError(f"cannot change {sorted(changed)} when resuming; start a new run folder instead")
        recipe = meta.get("recipe", {})
        dataset, seed, limit = recipe.get("dataset", dataset), recipe.get("seed", seed), recipe.get("limit", limit)
    else:
        v = registry.get(variant) if isinstance(variant, str) else variant
        if (out / CHECKPOINT).exists() or (out / MODEL).exists():
            raise FolderError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        cfg = make_config(v.config_cls, overrides)
    if cfg.batch_size < 1 or cfg.n_critic < 1:
        raise ConfigError("batch_size and n_critic must be at least 1")

    ds = load_dataset(dataset, resolution=cfg.resolution, channels=cfg.channels, limit=limit)
    if ds.kind not in v.modalities:
        raise DatasetError(f"variant {v.name!r} only learns {', '.join(v.modalities)} data; {ds.name!r} is {ds.kind} data")
    cfg = replace(cfg, data=ds.kind)

    rank, world = _distributed()
    dev = pick_device(device)
    torch.manual_seed(seed * world + rank)
    G, D = build_models(v, cfg)
    G, D = G.to(dev).train(), D.to(dev).train()
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    s = _State(G, D, G_ema, opt_G, opt_D)
    elapsed_before = 0.0
    if resume:
        ck = _load_checkpoint(out, s, dev)
        elapsed_before = float(ck.get("elapsed", 0.0))
        if s.step >= steps:
            yield Event("done", s.step, steps, message=f"{out} is already at step {s.step} >= {steps}; raise --steps to train further")
            return
    batches = _Batches(ds, cfg.batch_size, seed, dev, rank, world)
    batches.position = s.step * (cfg.n_critic + 1)  # data order continues exactly where it stopped

    recipe = {"dataset": ds.name if ds.name in ("fashion-mnist", "mnist", "cifar10", "ring8", "grid25") else str(dataset),
              "steps": steps, "seed": seed, "batch_size": cfg.batch_size, "limit": limit,
              "command": command or default_command()}
    reg = {ph: (net, getattr(cfg, every) if isinstance(every, str) else every) for ph, (net, every) in v.reg_phases.items()}
    preview_every = preview_every or max(1, min(200, steps // 10))
    checkpoint_every = checkpoint_every or max(1, min(500, steps // 4))
    fixed_z = latents(PREVIEW_N, cfg.z_dim, seed + 1)
    real_sample = batches.ds.batch(torch.arange(min(PREVIEW_N, len(ds))), "cpu")
    real_div = _diversity(real_sample)
    log_path = out / "checkpoint" / "log.jsonl"
    is_main = rank == 0

    def params_of(net: str) -> tuple[nn.Module, torch.optim.Optimizer]:
        return (G, opt_G) if net == "G" else (D, opt_D)

    def run_phase(phase: str, net: str, real: torch.Tensor) -> dict[str, float]:
        model, opt = params_of(net)
        other = D if net == "G" else G
        other.requires_grad_(False)  # no gradients for the network that is not being updated
        model.requires_grad_(True)
        z = torch.randn(cfg.batch_size, cfg.z_dim, device=dev)
        with _autocast(dev, amp):
            loss, logs = v.loss(phase, G=G, D=D, real=real, z=z, cfg=cfg, step=s.step)
        if not torch.isfinite(loss).all():
            raise TrainingDiverged(
                f"training diverged at step {s.step} (phase {phase} loss = {loss.item()}); the last good checkpoint "
                f"in {out} is kept; lower the learning rates (--set lr_d=... lr_g=...) and --resume, or start over"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:
            for p in model.parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= world
        opt.step()
        other.requires_grad_(True)
        return logs

    def snapshot(kind: str) -> Event:
        recalibrate_batchnorm(G_ema, cfg.z_dim, dev, seed)
        img = generate(G_ema, fixed_z, seed=seed + 1)
        grid = to_grid(img, nrow=8) if img.dim() == 4 else _points_plot(img, ds)
        if kind == "checkpoint":
            _save_checkpoint(out, s, dev, {"elapsed": elapsed_before + time.time() - t0})
            save_generator(out, G_ema, variant=v, cfg=cfg, recipe=recipe, step=s.step)
            buf = io.BytesIO()
            grid.save(buf, format="PNG")
            atomic_write(out / SAMPLES, buf.getvalue())
        return Event(kind, s.step, steps, image=grid, elapsed=elapsed_before + time.time() - t0), img

    t0 = time.time()
    t_last, step_last = t0, s.step
    if is_main:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if resume and log_path.exists():  # drop log lines written after the checkpoint we resume from
            keep = [ln for ln in log_path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= s.step]
            atomic_write(log_path, ("\n".join(keep) + "\n").encode() if keep else b"")
    log_file = open(log_path, "a") if is_main else None  # noqa: SIM115 - closed in finally
    ips, low_d_streak, collapse_warned, mid_step = 0.0, 0, False, False
    if is_main:
        yield Event("start", s.step, steps, message=f"{v.name} on {ds.name} ({len(ds):,} samples"
                    + (f", {ds.skipped} unreadable files skipped" if ds.skipped else "") + f") on {dev}"
                    + (f" x {world} processes" if world > 1 else ""))
    try:
        while s.step < steps:
            mid_step, logs = True, {}
            for _ in range(cfg.n_critic):
                real = batches.next()
                logs.update(run_phase("D", "D", real))
            for phase, (net, every) in reg.items():
                if net == "D" and s.step % every == 0:
                    logs.update(run_phase(phase, "D", real))
            logs.update(run_phase("G", "G", batches.next()))
            for phase, (net, every) in reg.items():
                if net == "G" and s.step % every == 0:
                    logs.update(run_phase(phase, "G", real))
            s.step += 1
            _update_ema(G_ema, G, cfg, s.step * cfg.batch_size * world)
            mid_step = False
            if not is_main:
                continue
            now = time.time()
            if now - t_last > 0.5 or s.step == steps:
                ips = (s.step - step_last) * cfg.batch_size * cfg.n_critic * world / max(now - t_last, 1e-9)
                t_last, step_last = now, s.step
            elapsed = elapsed_before + now - t0
            eta = (steps - s.step) * cfg.batch_size * cfg.n_critic * world / ips if ips > 0 else None
            if s.step % log_every == 0 or s.step == steps:
                log_file.write(json.dumps({"step": s.step, **{k: round(x, 5) for k, x in logs.items()}}) + "\n")
                yield Event("step", s.step, steps, logs, ips, elapsed, eta)
            low_d_streak = low_d_streak + 1 if 0 <= logs.get("loss_D", 1.0) < 1e-2 else 0
            if low_d_streak == 200:
                yield Event("warning", s.step, steps, message="D's loss has been near zero for 200 steps: D is winning and G "
                            "gets little gradient; try label_smoothing, a lower lr_d or fewer n_critic")
            is_ckpt = s.step % checkpoint_every == 0 or s.step == steps
            if is_ckpt or s.step % preview_every == 0:
                log_file.flush()
                ev, img = snapshot("checkpoint" if is_ckpt else "preview")
                ev.losses, ev.images_per_s, ev.eta = logs, ips, eta
                yield ev
                if img.dim() == 4 and s.step >= max(steps // 4, 300):  # early samples are all alike
                    ratio = _diversity(img) / max(real_div, 1e-8)
                    if ratio < 0.4 and not collapse_warned:
                        collapse_warned = True
                        yield Event("warning", s.step, steps, message=f"sample diversity fell to {ratio:.0%} of the data's: "
                                    "suspect mode collapse; look at the previews and consider another variant or lower lrs")
                    elif ratio >= 0.5:
                        collapse_warned = False
            if stop is not None and stop.is_set():
                if not is_ckpt:
                    log_file.flush()
                    snapshot("checkpoint")
                yield Event("done", s.step, steps, elapsed=elapsed_before + time.time() - t0,
                            message=f"stopped at step {s.step}; resume with --resume (checkpoint in {out})")
                return
        if is_main:
            yield Event("done", s.step, steps, elapsed=elapsed_before + time.time() - t0, message=f"finished: {out}")
    except (KeyboardInterrupt, GeneratorExit):  # Ctrl-C, or the consumer let go (a tab closed, a `break`):
        if is_main and s.step > 0 and not mid_step:  # a stop, so save unless the step was cut in half
            try:
                log_file.flush()
                snapshot("checkpoint")
            except OSError as e:  # e.g. the folder is gone; the interruption itself must still propagate
                log.warning("could not save a checkpoint in %s on interruption: %s", out, e)
        raise
    finally:
        if log_file:
            log_file.close()


def _points_plot(points: torch.Tensor, ds: ImageDataset) -> Image.Image:
    from ganhub.sample import scatter

    return scatter(points, ds.images[:2000])


def read_log(folder: str | Path) -> list[dict[str, float]]:
    """The loss log of a run folder (one dict per logged step), for plots."""
    path = Path(folder) / "checkpoint" / "log.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a crash mid-write
            continue
    return rows

