"""THE training loop: one for every variant, in named parts.

    train(...) / train_spec(spec, out)   check everything, then return the Event stream (a generator)
    PhaseRunner (ganhub.step)             one iteration: D, regularisers, G phases, post_step, schedulers
    Monitor                               rank 0: loss log, TensorBoard, progress events, health warnings
    Snapshotter                           rank 0: preview grids, checkpoints (+ EMA generator, config, samples)

A run is a RunSpec (ganhub.run): train() builds one from its arguments, or reads it from the folder
when resuming, and every file goes through RunFolder. Exact resume: data order is a pure function of
(seed, epoch, position); weights, optimisers, schedulers and every rank's RNG state are checkpointed;
previews sample under a forked RNG from a calibrated copy of the EMA. On CPU, N steps + resume to 2N
equals 2N steps bit for bit, and the command recorded in config.json reproduces the run.

Multi-GPU: `torchrun --nproc-per-node K -m ganhub.cli train ...` (ganhub.distributed): rank 0's initial
G, D and EMA are broadcast; gradients are averaged in one flattened all_reduce per phase; the EMA
half-life counts global images; stop, divergence and errors are agreed by all ranks; rank 0 writes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import logging
import math
import os
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ganhub import distributed as dist
from ganhub import errors as _errors
from ganhub import registry
from ganhub.augment import AdaptiveAugment, DiffAugment, resolve_policy
from ganhub.data import ImageDataset, check_classes, load_dataset
from ganhub.device import describe as describe_device
from ganhub.device import memory_format, pick_device, to_format
from ganhub.errors import ConfigError, DatasetError, FolderError, GanhubError, TrainingDiverged
from ganhub.precision import resolve as resolve_precision
from ganhub.run import BUILTIN_DATASETS, RunFolder, RunSpec, load_state_strict
from ganhub.sample import generate, latents, scatter, seeded, to_grid
from ganhub.step import Optimizers, PhaseRunner, lr_factor, make_optimizers
from ganhub.variant import BaseConfig, Variant, build_models, call_G, config_to_dict, make_config

log = logging.getLogger("ganhub.train")

PREVIEW_N = 64
TOY_DATASETS = ("ring8", "grid25")
_KNOWN_SIZES = {"fashion-mnist": 60_000, "mnist": 60_000, "cifar10": 50_000, "ring8": 50_000, "grid25": 50_000}


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


# ================================================================================= entry points
def train(
    variant: str | Variant | RunSpec,
    *,
    out: str | Path,
    dataset: str | None = None,
    steps: int | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str | None = None,
    resume: bool = False,
    preview_every: int | None = None,
    checkpoint_every: int | None = None,
    log_every: int = 1,
    stop: threading.Event | None = None,
    limit: int | None = None,
    precision: str | None = None,
    sync_bn: bool | None = None,
    tensorboard: bool | None = None,
    command: str | None = None,
    amp: bool | None = None,
) -> Iterator[Event]:
    """Train `variant` on `dataset` up to `steps` iterations into the run folder `out`; returns the Events.

    Everything is checked before any work (GanhubError, one line). `steps` is the target of the folder:
    with `resume=True` the run recorded in `out` continues up to it (its dataset, seed, config and
    precision are the recorded ones; passing different ones is refused). `stop.set()` ends the run after
    the current step with a checkpoint; so does closing the returned generator, and Ctrl-C (then
    KeyboardInterrupt is raised once the checkpoint is written). TrainingDiverged for NaN/inf losses.
    `variant` may be a RunSpec (then only `out` and the run options are used). `command` and `amp` are
    ignored (the command is rendered from the spec; `precision` replaces `amp`).
    """
    if command is not None or amp is not None:
        warnings.warn("train(command=, amp=) are ignored: the recorded command comes from the run spec; "
                      "use precision='auto'|'bf16'|'fp32'", DeprecationWarning, stacklevel=2)
        if amp is False and precision is None:
            precision = "fp32"
    folder = RunFolder(out)
    v = variant if isinstance(variant, Variant) else None
    if isinstance(variant, RunSpec):
        spec = variant
    elif resume:
        spec = _resumed_spec(folder, variant, dataset=dataset, steps=steps, seed=seed, batch_size=batch_size,
                             overrides=overrides, limit=limit, precision=precision, sync_bn=sync_bn)
    else:
        v = registry.get(variant) if isinstance(variant, str) else variant
        if not isinstance(v, Variant):
            raise ConfigError(f"train() needs a variant name, a ganhub.variant.Variant or a RunSpec, got {type(variant).__name__}")
        if dataset is None or steps is None:
            raise ConfigError("a new run needs a dataset (--dataset) and a number of steps (--steps)")
        values = dict(overrides or {})
        if batch_size is not None:
            values["batch_size"] = batch_size
        kind = "points" if str(dataset).strip() in TOY_DATASETS else "image"
        if "data" in values and values["data"] != kind:  # `data` follows the dataset
            make_config(v.config_cls, values)  # a value that is not even allowed is refused as such
            raise ConfigError(f"config key 'data' follows the dataset: {dataset} is {kind} data; drop --set data={values['data']}")
        values["data"] = kind
        cfg = make_config(v.config_cls, values)
        spec = RunSpec.create(v, cfg, dataset=str(dataset), steps=steps, seed=0 if seed is None else seed, limit=limit,
                              precision=precision or "auto", world_size=_env_world_size(), sync_bn=bool(sync_bn))
    return train_spec(spec, out, variant=v, resume=resume, device=device, preview_every=preview_every,
                      checkpoint_every=checkpoint_every, log_every=log_every, stop=stop, tensorboard=tensorboard)


def train_spec(
    spec: RunSpec,
    out: str | Path,
    *,
    variant: Variant | None = None,
    resume: bool = False,
    device: str | None = None,
    preview_every: int | None = None,
    checkpoint_every: int | None = None,
    log_every: int = 1,
    stop: threading.Event | None = None,
    tensorboard: bool | None = None,
) -> Iterator[Event]:
    """Check `spec` and the folder `out` (nothing is written, no network built), then return the Events.

    `variant`: the Variant object when it is not installed (a run from an object still writes
    config.json; resume it by passing the same object)."""
    spec.check()
    folder = RunFolder(out)
    if variant is not None and variant.name != spec.variant:
        raise ConfigError(f"the run spec is for {spec.variant!r} but variant {variant.name!r} was given")
    v = variant if variant is not None else (folder.variant() if resume and folder.has_config() else registry.get(spec.variant))
    cfg = make_config(v.config_cls, spec.config_dict())
    spec = dataclasses.replace(spec, config=config_to_dict(cfg))  # the FULL config, whatever the spec held
    for name, value in (("--preview-every", preview_every), ("--checkpoint-every", checkpoint_every), ("log_every", log_every)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be an integer at least 1 (steps), got {value!r}")
    world_size = _env_world_size()  # first: how the run is launched, then what it may change
    if spec.world_size != world_size:
        launch = f"torchrun --nproc-per-node {spec.world_size}" if spec.world_size > 1 else "plain `ganhub train` (one process)"
        raise ConfigError(f"this run is for {spec.world_size} process(es) but {world_size} were launched; "
                          f"{'resume' if resume else 'run'} it with {launch}, or start a new run folder")
    if resume and folder.has_config():  # a spec handed in directly: the recorded run, bar its schedule
        recorded = folder.spec
        moved = spec.dataset not in BUILTIN_DATASETS and recorded.dataset not in BUILTIN_DATASETS  # same images, new path
        changed = [f.name for f in dataclasses.fields(RunSpec)
                   if f.name not in ("steps", "plugin", "world_size", "augment_policy", "config")
                   and getattr(recorded, f.name) != getattr(spec, f.name) and not (f.name == "dataset" and moved)]
        was = make_config(v.config_cls, recorded.config_dict())
        changed += sorted(f.name for f in dataclasses.fields(was)
                          if f.name != "lr_rampdown" and getattr(was, f.name) != getattr(cfg, f.name))
        if changed:
            raise ConfigError(f"cannot change {changed} when resuming; start a new run folder instead")
        _check_schedule(recorded.steps, was.lr_rampdown, spec.steps, cfg.lr_rampdown,
                        folder.checkpoint_step())
    dev = _device(device)
    precision = resolve_precision(spec.precision, dev)
    if spec.sync_bn and spec.world_size > 1 and dev.type not in ("cuda", "xpu"):
        raise ConfigError(f"--sync-bn needs GPUs (torch's SyncBatchNorm does not run on {dev.type}); drop --sync-bn")
    folder.check_target()
    if not resume:
        if folder.has_config() and folder.checkpoint_step() is not None:  # (an unreadable checkpoint: restartable)
            raise FolderError(f"{out} already holds a run (checkpoint at step {folder.checkpoint_step()}); "
                              "pass --resume to continue it or choose another --out")
        if folder.has_model() and not folder.has_checkpoint():
            raise FolderError(f"{out} holds a trained model (no checkpoint to continue); choose another --out")
    elif not folder.has_config():
        raise FolderError(f"{out} has no config.json to resume from; train without --resume")
    elif folder.has_checkpoint() and folder.checkpoint_step() is None:
        folder.read_checkpoint()  # raises the one-line FolderError saying what is wrong with it
        raise FolderError(f"{folder.checkpoint_path} is damaged; start the run again without --resume")
    elif folder.has_model() and not folder.has_checkpoint():  # e.g. bundled or pulled weights: never overwritten
        raise FolderError(f"{out} holds a trained model but no checkpoint to resume from; start a new run with another --out")
    if tensorboard:  # asked for explicitly: say now, not on rank 0 after the data has loaded
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError("TensorBoard logging needs the tensorboard package: pip install 'ganhub[tensorboard]'") from None
    check_memory(v, cfg, _known_images(spec), dev, spec.world_size)
    return _Training(spec, folder, v, cfg, dev, precision, resume, stop, tensorboard,
                     preview_every, checkpoint_every, log_every).events()


def _resumed_spec(folder: RunFolder, variant: str | Variant | None, *, dataset, steps, seed, batch_size, overrides,
                  limit, precision, sync_bn) -> RunSpec:
    """The spec recorded in `folder`, carried to the new `steps`; any other change is refused."""
    if not folder.has_config():
        if folder.has_checkpoint():
            raise FolderError(f"{folder.path} has a checkpoint but no config.json (a run killed while starting); "
                              "start it again without --resume")
        raise FolderError(f"{folder.path} has no config.json to resume from; train without --resume")
    spec = folder.spec
    name = variant.name if isinstance(variant, Variant) else variant
    if name is not None and name != spec.variant:
        raise ConfigError(f"{folder.path} holds a {spec.variant!r} run, not {name!r}; pick the right folder")
    v = variant if isinstance(variant, Variant) else folder.variant()
    changed = []
    values = dict(overrides or {})
    if batch_size is not None:
        values["batch_size"] = batch_size
    if values:
        recorded = make_config(v.config_cls, spec.config_dict())
        asked = make_config(v.config_cls, {**spec.config_dict(), **values})
        changed += sorted(k for k in values
                          if k != "lr_rampdown" and getattr(recorded, k, None) != getattr(asked, k, None))
        if "lr_rampdown" in values:  # train_spec checks that the steps trained so far keep their rates
            spec = dataclasses.replace(spec, config={**spec.config, "lr_rampdown": asked.lr_rampdown})
    for key, given in (("seed", seed), ("limit", limit), ("precision", precision), ("sync_bn", sync_bn)):
        if given is not None and given != getattr(spec, key):
            changed.append(key)
    if dataset is not None and str(dataset).strip() != spec.dataset:
        if spec.dataset in BUILTIN_DATASETS or str(dataset).strip() in BUILTIN_DATASETS:
            changed.append("dataset")
        else:  # the same images at a new path (a moved folder, a re-uploaded zip)
            spec = dataclasses.replace(spec, dataset=str(dataset).strip())
    if changed:
        raise ConfigError(f"cannot change {changed} when resuming; start a new run folder instead")
    return dataclasses.replace(spec, steps=steps) if steps is not None else spec


def _check_schedule(old_steps: int, old_decay: float, steps: int, decay: float, trained: int | None) -> None:
    """A resumed run may move its end (`steps`) and start or change an lr_rampdown only where every step
    trained so far keeps the rate it ran at: then the recorded command, run in one go, is the same run.
    `lr_factor` never rises, so the two schedules agree on steps 0..trained-1 when they are equal or both
    still 1 at the last one.
    """
    if not trained or (old_steps, old_decay) == (steps, decay):
        return
    last = trained - 1
    if lr_factor(last, old_steps, old_decay) == 1 == lr_factor(last, steps, decay):
        return
    if lr_factor(last, old_steps, old_decay) < 1:
        why = (f"its learning rate already ramped down (lr_rampdown={old_decay:g} of {old_steps:,} steps) "
               f"before step {trained:,}, so it cannot be carried to {steps:,} steps or another lr_rampdown")
    else:  # the bound, rounded down to 4 decimals so that the value shown is one that is accepted
        bound = math.floor(max(0.0, 1 - trained / steps) * 1e4) / 1e4
        why = (f"lr_rampdown={decay:g} of {steps:,} steps would lower the rate before step {trained:,}, "
               f"which already ran at the full rate; use lr_rampdown <= {bound:g}")
    raise ConfigError(f"cannot resume this run with that schedule: {why}; start a new run folder instead")


def _env_world_size() -> int:
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer; launch with torchrun") from None


def _device(device: str | None) -> torch.device:
    dev = pick_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0) or 0))
    return dev


def read_log(folder: str | Path) -> list[dict[str, float]]:
    """The loss log of a run folder (one dict per logged step), for plots."""
    return RunFolder(folder).read_log()


# ================================================================================= memory
def _known_images(spec: RunSpec) -> int:
    n = _KNOWN_SIZES.get(spec.dataset, 0)
    return min(n, spec.limit) if spec.limit else n


def _memory_of(dev: torch.device) -> int | None:
    """Bytes of memory on `dev` (the machine's RAM for CPU and MPS), None when unknown."""
    try:
        if dev.type == "cuda":
            return int(torch.cuda.get_device_properties(dev).total_memory)
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError, RuntimeError):
        return None


def estimate_memory(variant: Variant, cfg: BaseConfig, n_images: int = 0) -> tuple[int, int] | None:
    """(bytes on the training device, bytes of host RAM for the dataset), roughly, or None if unknown.

    The networks are built on the meta device (no memory, no weights) and run once with forward hooks
    that add up every layer's output: weights (G, D, EMA), Adam's two moments, gradients and the
    activations autograd keeps (G once, D on reals and fakes), x2 for the backward's transients."""
    outputs = [0]

    def hook(_m, _i, out):
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                outputs[0] += t.numel()

    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            G, D = variant.build(cfg)
        p_g = sum(p.numel() for p in G.parameters())
        p_d = sum(p.numel() for p in D.parameters())
    except Exception:  # a plugin that cannot build on meta (or lazy modules): no estimate, no refusal
        return None
    weights = (2 * p_g + p_d) * 4 + (p_g + p_d) * 4 * 3  # G, EMA, D + grads + Adam's exp_avg, exp_avg_sq
    acts = 0
    leaves = [m for m in (*G.modules(), *D.modules()) if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        b = cfg.batch_size
        z = torch.empty(b, cfg.z_dim, device="meta")
        c = torch.zeros(b, dtype=torch.long, device="meta") if cfg.num_classes else None
        with torch.no_grad():
            x = call_G(G, z, c)
            g_out = outputs[0]
            D(x) if c is None else D(x, c)
        d_out = outputs[0] - g_out
        acts = (g_out + 2 * d_out) * 4 * 2
    except Exception:  # a forward that needs real data (an .item(), a data-dependent shape): weights only
        acts = 0
    finally:
        for h in handles:
            h.remove()
    per_image = 2 * 4 if cfg.data == "points" else cfg.channels * cfg.resolution**2
    return weights + acts, n_images * per_image


def check_memory(variant: Variant, cfg: BaseConfig, n_images: int, dev: torch.device, processes: int = 1) -> None:
    """ConfigError when the estimate exceeds the memory of this machine (before anything is built)."""
    est = estimate_memory(variant, cfg, n_images)
    if est is None:
        return
    train_bytes, data_bytes = est
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", processes) or 1))
    if dev.type == "cuda":
        need, have, where = train_bytes, _memory_of(dev), f"GPU {dev}"
        host_need, host_have = data_bytes * local, _memory_of(torch.device("cpu"))
        if host_have and host_need > host_have:
            raise ConfigError(f"the dataset needs ~{host_need / 2**30:.1f} GiB of RAM, this machine has "
                              f"{host_have / 2**30:.1f} GiB; use --limit or a lower resolution")
    else:
        need, have, where = (train_bytes + data_bytes) * local, _memory_of(dev), "this machine"
    if have and need > have:
        raise ConfigError(f"this configuration needs ~{need / 2**30:.1f} GiB of memory (batch_size {cfg.batch_size} at "
                          f"{cfg.resolution} px), {where} has {have / 2**30:.1f} GiB; lower batch_size or resolution")


# ================================================================================= parts of the loop
class Batches:
    """Real batches in an order that depends only on (seed, epoch, position): resumable by position.
    Rank r of W takes the r-th slice of each global batch."""

    def __init__(self, ds: ImageDataset, batch_size: int, seed: int, device: torch.device, world: dist.World):
        self.ds, self.bs, self.seed, self.device, self.world = ds, batch_size, seed, device, world
        self.position = 0  # batches drawn so far (by this rank)
        self.fmt = memory_format(device)
        self._epoch, self._perm = -1, None

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        n, w = len(self.ds), self.world
        per_epoch = max(1, n // (self.bs * w.size))
        epoch, i = divmod(self.position, per_epoch)
        if epoch != self._epoch:
            self._perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            self._epoch = epoch
        start = (i * w.size + w.rank) * self.bs
        idx = self._perm[start : start + self.bs]
        if len(idx) < self.bs:  # dataset smaller than a batch: wrap around
            idx = self._perm[torch.arange(start, start + self.bs) % n]
        self.position += 1
        x, y = self.ds.batch(idx, self.device)
        return to_format(x, self.fmt), y  # (images, labels | None)


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, cfg: BaseConfig, images_seen: int, global_batch: int) -> None:
    """EMA with a half-life in GLOBAL images (Karras et al. 2020, app. B), ramped up early in training."""
    if cfg.ema_half_life_kimg <= 0:
        beta = 0.0
    else:
        half_life = cfg.ema_half_life_kimg * 1000
        if cfg.ema_rampup > 0:
            half_life = min(half_life, images_seen * cfg.ema_rampup)
        beta = 0.5 ** (global_batch / max(half_life, 1e-8))
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.lerp_(p, 1.0 - beta)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


@torch.no_grad()
def recalibrate_batchnorm(G: nn.Module, cfg: BaseConfig, device: torch.device, seed: int = 0, batches: int = 8) -> bool:
    """Re-estimate BatchNorm statistics of an EMA generator in place (the copied running stats belong to
    G's weights, not the average's), as torch.optim.swa_utils.update_bn does for SWA. Fixed latents and
    labels; G's own randomness under a forked RNG. Returns False when G has no BatchNorm."""
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return False
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
        m.train()
    with seeded(seed, device):
        for i in range(batches):
            z = latents(128, cfg.z_dim, seed * 7 + i).to(device)
            c = (torch.randint(cfg.num_classes, (128,), generator=torch.Generator().manual_seed(seed * 7 + i)).to(device)
                 if cfg.num_classes else None)
            call_G(G, z, c)
    for m, (momentum, training) in zip(bns, saved):
        m.momentum = momentum
        m.train(training)
    return True


def _augment_words(augment: DiffAugment) -> str:
    if isinstance(augment, AdaptiveAugment):
        return f"DiffAugment {augment.policy} at adaptive strength (p = {augment.p:.3g}, target {augment.target:g})"
    return f"DiffAugment {augment.policy}"


def _diversity(x: torch.Tensor) -> float:
    """Mean pairwise L2 distance within a batch: falls toward 0 when G collapses to few outputs."""
    flat = x.flatten(1).float()
    return torch.pdist(flat).mean().item() if len(flat) > 1 else 0.0


@dataclass
class TrainState:
    """Everything a checkpoint holds (besides the RNG states)."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    opts: Optimizers
    step: int = 0
    data_position: int = 0
    elapsed: float = 0.0  # wall-clock seconds of training, over every leg of a resumed run
    cpu_seconds: float | None = 0.0  # CPU time of rank 0's process, likewise (None: a leg predates this record)
    devices: list[str] = field(default_factory=list)  # what trained each leg (ganhub.device.describe), in order
    augment: DiffAugment | None = None  # what D sees its inputs through; an AdaptiveAugment's p is checkpointed


def _pack(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A state dict -> JSON, its tensors moved into `tensors` (safetensors holds them; nothing is pickled)."""
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj):
            return {k: _pack(v, f"{key}.{k}", tensors) for k, v in obj.items()}
        if all(isinstance(k, int) for k in obj):  # optimiser state is keyed by parameter index
            return {"__int_keys__": {str(k): _pack(v, f"{key}.{k}", tensors) for k, v in obj.items()}}
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_pack(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ConfigError(f"optimiser/scheduler state at {key} holds a {type(obj).__name__}, which a checkpoint cannot "
                      "store (tensors, numbers, strings, lists and dicts only); fix the plugin's make_optimizers")


def _unpack(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__int_keys__" in obj:
            return {int(k): _unpack(v, tensors) for k, v in obj["__int_keys__"].items()}
        if "__tuple__" in obj:
            return tuple(_unpack(v, tensors) for v in obj["__tuple__"])
        return {k: _unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    return obj


def checkpoint_payload(s: TrainState, rng: list[dict[str, torch.Tensor]]) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    for name, module in (("G", s.G), ("D", s.D), ("G_ema", s.G_ema)):
        for k, v in module.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().cpu().contiguous()
    opts = _pack(s.opts.state_dict(), "opt", tensors)
    for rank, states in enumerate(rng):
        for k, v in states.items():
            tensors[f"rng.{rank}.{k}"] = v.detach().cpu().contiguous()
    meta = {"step": s.step, "data_position": s.data_position, "elapsed": s.elapsed, "cpu_seconds": s.cpu_seconds,
            "devices": s.devices, "world_size": len(rng), "opts": opts}
    if isinstance(s.augment, AdaptiveAugment):
        meta["augment"] = s.augment.state_dict()
    return tensors, meta


def restore_checkpoint(folder: RunFolder, s: TrainState, main: bool = True) -> list[dict[str, torch.Tensor]]:
    """Load weights, optimisers and counters into `s`; returns every rank's RNG states (set them after).
    `main`: this is rank 0 (or the only process), which takes over the run's pooled augmentation counts."""
    tensors, meta = folder.read_checkpoint()
    path = folder.checkpoint_path
    if "opts" not in meta:
        raise FolderError(f"{path} was written by an older ganhub (no optimiser/scheduler state); start the run again")
    for name, module in (("G", s.G), ("D", s.D), ("G_ema", s.G_ema)):
        sd = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
        load_state_strict(module, sd, f"{path} [{name}]")
    try:
        s.opts.load_state_dict(_unpack(meta["opts"], tensors))
    except (KeyError, ValueError, RuntimeError) as e:
        raise FolderError(f"{path}: the optimiser state does not fit this variant's optimisers ({e}); start a new run") from None
    s.step, s.data_position, s.elapsed = int(meta["step"]), int(meta.get("data_position", 0)), float(meta.get("elapsed", 0.0))
    cpu = meta.get("cpu_seconds")  # absent from checkpoints before ganhub recorded it: unknown from then on
    s.cpu_seconds = float(cpu) if isinstance(cpu, (int, float)) else None
    devices = meta.get("devices")
    s.devices = [str(d) for d in devices] if isinstance(devices, list) else ["an unrecorded device"]
    if isinstance(s.augment, AdaptiveAugment):
        if not isinstance(meta.get("augment"), dict):
            raise FolderError(f"{path} holds no adaptive augmentation state, yet its config asks for one; "
                              "start the run again")
        try:
            s.augment.load_state_dict(meta["augment"], counts=main)
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise FolderError(f"{path}: {e}; start the run again") from None
    rng: list[dict[str, torch.Tensor]] = [{} for _ in range(int(meta.get("world_size", 1)))]
    for k, v in tensors.items():
        if k.startswith("rng."):
            _, rank, name = k.split(".", 2)
            rng[int(rank)][name] = v
    return rng


class _TensorBoard:
    """Loss curves and preview grids as TensorBoard event files in <run>/tensorboard (when installed)."""

    def __init__(self, folder: RunFolder, enabled: bool | None, purge_step: int | None):
        self.writer = None
        if enabled is False:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # not installed (train_spec refused tensorboard=True already): no event files
            return
        self.writer = SummaryWriter(log_dir=str(folder.tensorboard_dir), purge_step=purge_step)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        if self.writer is not None:
            for k, x in values.items():
                self.writer.add_scalar(k if "/" in k else f"loss/{k}", x, step)

    def image(self, step: int, img: Image.Image) -> None:
        if self.writer is not None:
            import numpy as np

            self.writer.add_image("samples", np.asarray(img.convert("RGB")), step, dataformats="HWC")

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class Monitor:
    """Rank 0's view of a run: the loss log, TensorBoard, progress events (img/s, ETA) and health warnings."""

    def __init__(self, spec: RunSpec, cfg: BaseConfig, logfile, tb: _TensorBoard, step: int, elapsed: float,
                 cpu_seconds: float | None, real_diversity: float, log_every: int):
        self.spec, self.cfg, self.log, self.tb, self.log_every = spec, cfg, logfile, tb, log_every
        self.images_per_step = spec.global_batch * cfg.n_critic  # real images D sees per iteration
        self.t0, self.elapsed_before = time.time(), elapsed
        self.cpu0, self.cpu_before = time.process_time(), cpu_seconds
        self.t_last, self.step_last, self.ips = self.t0, step, 0.0
        self.real_div, self.low_d_streak, self.collapse_warned = real_diversity, 0, False

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.t0

    @property
    def cpu_seconds(self) -> float | None:
        """CPU time of this process (all its threads) since the run began; in the app it includes the UI's."""
        return None if self.cpu_before is None else self.cpu_before + time.process_time() - self.cpu0

    def eta(self, step: int) -> float | None:
        return (self.spec.steps - step) * self.images_per_step / self.ips if self.ips > 0 else None

    def after_step(self, step: int, logs: dict[str, float]) -> Iterator[Event]:
        now, total = time.time(), self.spec.steps
        if now - self.t_last > 0.5 or step == total:
            self.ips = (step - self.step_last) * self.images_per_step / max(now - self.t_last, 1e-9)
            self.t_last, self.step_last = now, step
        if step % self.log_every == 0 or step == total:
            self.log.write({"step": step, **{k: round(x, 5) for k, x in logs.items()}})
            self.tb.scalars(step, {**logs, "speed/images_per_s": self.ips})
            yield Event("step", step, total, logs, self.ips, self.elapsed, self.eta(step))
        self.low_d_streak = self.low_d_streak + 1 if 0 <= logs.get("loss_D", 1.0) < 1e-2 else 0
        if self.low_d_streak == 200:
            yield Event("warning", step, total, message="D's loss has been near zero for 200 steps: D is winning and "
                        "G gets little gradient; try label_smoothing, a lower lr_d or fewer n_critic")

    def after_snapshot(self, ev: Event, img: torch.Tensor, logs: dict[str, float]) -> Iterator[Event]:
        ev.losses, ev.images_per_s, ev.eta, ev.elapsed = logs, self.ips, self.eta(ev.step), self.elapsed
        self.tb.image(ev.step, ev.image)
        yield ev
        if img.dim() == 4 and ev.step >= max(self.spec.steps // 4, 300):  # early samples are all alike
            ratio = _diversity(img) / max(self.real_div, 1e-8)
            if ratio < 0.4 and not self.collapse_warned:
                self.collapse_warned = True
                yield Event("warning", ev.step, self.spec.steps, message=f"sample diversity fell to {ratio:.0%} of the "
                            "data's: suspect mode collapse; look at the previews and consider another variant or lower lrs")
            elif ratio >= 0.5:
                self.collapse_warned = False


class Snapshotter:
    """Rank 0: preview grids of the EMA generator from fixed latents (and fixed classes), and checkpoints:
    checkpoint/training.safetensors, then model.safetensors, config.json and samples.png."""

    def __init__(self, folder: RunFolder, spec: RunSpec, cfg: BaseConfig, ds: ImageDataset, device: torch.device):
        self.folder, self.spec, self.cfg, self.ds, self.device = folder, spec, cfg, ds, device
        self.nrow, n = 8, PREVIEW_N
        self.labels = None
        if cfg.num_classes:  # one row per class (up to 16 classes), the same latents down each column
            k = min(cfg.num_classes, 16)
            self.labels = torch.arange(k).repeat_interleave(self.nrow)
            n = len(self.labels)
        self.z = latents(self.nrow, cfg.z_dim, spec.seed + 1).repeat(n // self.nrow, 1) if cfg.num_classes else \
            latents(n, cfg.z_dim, spec.seed + 1)

    def ready(self, G_ema: nn.Module) -> nn.Module:
        """The generator to show and ship: the EMA with recalibrated BatchNorm (a copy; G_ema is untouched,
        so every rank keeps the same EMA and previews never change the run)."""
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in G_ema.modules()):
            return G_ema
        G = copy.deepcopy(G_ema)
        recalibrate_batchnorm(G, self.cfg, self.device, self.spec.seed)
        return G.eval()

    def grid(self, G: nn.Module) -> tuple[Image.Image, torch.Tensor]:
        img = generate(G, self.z, self.labels, seed=self.spec.seed + 1)
        pic = to_grid(img, nrow=self.nrow) if img.dim() == 4 else scatter(img, self.ds.images[:2000])
        return pic, img

    def save(self, s: TrainState, rng: list[dict[str, torch.Tensor]], G_ready: nn.Module, pic: Image.Image) -> None:
        tensors, meta = checkpoint_payload(s, rng)
        self.folder.write_checkpoint(tensors, meta)
        compute = {"wall_seconds": round(s.elapsed, 1), "cpu_seconds": None if s.cpu_seconds is None else round(s.cpu_seconds, 1),
                   "device": ", then ".join(s.devices), "processes": self.spec.world_size}
        self.folder.save_model(G_ready, self.spec, s.step, compute=compute)
        buf = io.BytesIO()
        pic.save(buf, format="PNG")
        self.folder.write_samples(buf.getvalue())


class _Interrupts:
    """Ctrl-C (and SIGTERM under torchrun) asks for a stop after the current step, with a checkpoint; a second
    Ctrl-C interrupts at once. Signal handlers live in the main thread only (the app trains in others)."""

    def __init__(self, distributed: bool):
        self.requested, self._old = False, {}
        self.signals = [signal.SIGINT] + ([signal.SIGTERM] if distributed else [])

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                with contextlib.suppress(ValueError, OSError):
                    self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, old in self._old.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(s, old)
        self._old = {}


# ================================================================================= agreement across ranks
def _comm_device(world: dist.World) -> torch.device:
    return torch.device("cuda", world.local_rank) if torch.distributed.get_backend() == "nccl" else torch.device("cpu")


def all_ranks(err: BaseException) -> BaseException:
    """Mark `err` as raised by every rank at the same point (the CLI then lets all ranks exit together)."""
    err.ganhub_all_ranks = True
    return err


def _agree(world: dist.World, err: BaseException | None) -> None:
    """Raise on every rank when any rank failed: the lowest failing rank's GanhubError, the same everywhere
    (so all stop together with one message); a bug keeps its traceback on its own rank."""
    if world.size <= 1:
        if err is not None:
            raise err
        return
    if not dist.any_rank(err is not None, world):
        return
    dev = _comm_device(world)
    first = torch.tensor([world.rank if err is not None else world.size], device=dev)
    torch.distributed.all_reduce(first, op=torch.distributed.ReduceOp.MIN)
    src = int(first.item())
    buf = torch.zeros(2048, dtype=torch.uint8, device=dev)
    if world.rank == src:
        text = f"{type(err).__name__}\t{err}".encode()[:2047]
        buf[: len(text)] = torch.tensor(list(text), dtype=torch.uint8, device=dev)
    torch.distributed.broadcast(buf, src=src)
    name, _, message = bytes(buf.cpu().tolist()).rstrip(b"\0").decode(errors="replace").partition("\t")
    if world.rank == src:
        raise all_ranks(err)
    cls = getattr(_errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, GanhubError)):
        cls, message = GanhubError, f"process {src} of {world.size} failed with {name}: {message}"
    raise all_ranks(cls(message))


def _agreed_divergence(v: Variant, world: dist.World) -> Variant:
    """The variant with a loss that all ranks check together, so a NaN on one rank stops every rank at the
    same phase, before the gradient all_reduce (instead of one rank dying inside a collective)."""
    if world.size <= 1:
        return v

    def loss(phase: str, **kw: Any):
        value, logs = v.loss(phase, **kw)
        bad = isinstance(value, torch.Tensor) and not bool(torch.isfinite(value.detach()).all())
        if dist.any_rank(bad, world):
            raise TrainingDiverged(f"training diverged at step {kw.get('step')}: the {phase} loss became NaN or inf "
                                   f"on at least one of the {world.size} processes")
        return value, logs

    return dataclasses.replace(v, loss=loss)


@torch.no_grad()
def _sync_buffers(modules: list[nn.Module], world: dist.World) -> None:
    """Rank 0's floating buffers (BatchNorm running stats) on every rank, one flattened broadcast (as DDP's
    broadcast_buffers), so G, D and the EMA stay identical across ranks."""
    bufs = [b for m in modules for b in m.buffers() if b.is_floating_point() and b.numel()]
    if world.size <= 1 or not bufs:
        return
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    flat = _flatten_dense_tensors(bufs).to(_comm_device(world))
    torch.distributed.broadcast(flat, src=0)
    for b, v in zip(bufs, _unflatten_dense_tensors(flat.to(bufs[0].device), bufs)):
        b.copy_(v)


# ================================================================================= the loop
class _Training:
    """One run from start (or resume) to done: wires the parts above and yields the Events."""

    def __init__(self, spec: RunSpec, folder: RunFolder, v: Variant, cfg: BaseConfig, dev: torch.device,
                 precision: str, resume: bool, stop: threading.Event | None, tensorboard: bool | None,
                 preview_every: int | None, checkpoint_every: int | None, log_every: int):
        self.spec, self.folder, self.v, self.cfg, self.dev, self.precision = spec, folder, v, cfg, dev, precision
        self.resume, self.stop, self.tensorboard, self.log_every = resume, stop, tensorboard, log_every
        self.preview_every = preview_every or max(1, min(200, spec.steps // 10))
        self.checkpoint_every = checkpoint_every or max(1, min(500, spec.steps // 4))
        self.saved_step: int | None = None  # step of the checkpoint on disk for this run

    # ------------------------------------------------------------------ setup
    def _load_data(self, world: dist.World) -> ImageDataset:
        """Rank 0 first (it may download into the cache), then the others read what it prepared."""
        ds, err = None, None
        for turn in (0, 1):
            if (turn == 0) == world.is_main:
                try:
                    ds = load_dataset(self.spec.dataset, resolution=self.cfg.resolution, channels=self.cfg.channels,
                                      limit=self.spec.limit)
                    if ds.kind not in self.v.modalities:
                        raise DatasetError(f"variant {self.v.name!r} only learns {', '.join(self.v.modalities)} data; "
                                           f"{ds.name!r} is {ds.kind} data")
                    check_classes(ds, self.cfg.num_classes)
                except (GanhubError, OSError) as e:
                    err = e if isinstance(e, GanhubError) else DatasetError(f"cannot read {self.spec.dataset}: {e}")
            _agree(world, err)
        return ds

    def _build(self, world: dist.World) -> TrainState:
        torch.manual_seed(self.spec.seed)
        G, D = build_models(self.v, self.cfg)
        fmt = memory_format(self.dev)  # same layout for a fresh run and a resume: resume stays exact
        G, D = G.to(self.dev, memory_format=fmt).train(), D.to(self.dev, memory_format=fmt).train()
        G_ema = copy.deepcopy(G).eval().requires_grad_(False)
        for m in (G, D, G_ema):  # identical initial weights and buffers on every rank (rank 0's)
            dist.broadcast_module(m, world)
        if self.spec.sync_bn and world.size > 1:
            G, D = nn.SyncBatchNorm.convert_sync_batchnorm(G), nn.SyncBatchNorm.convert_sync_batchnorm(D)
        opts = make_optimizers(self.v, G, D, self.cfg)
        if self.cfg.lr_rampdown and opts.schedulers:
            raise ConfigError(f"{self.v.name} brings its own learning-rate schedulers, so lr_rampdown cannot also "
                              "change the rates; --set lr_rampdown=0")
        return TrainState(G, D, G_ema, opts)

    # ------------------------------------------------------------------ the event stream
    def events(self) -> Iterator[Event]:
        world = dist.init()
        folder = self.folder
        created = not folder.path.exists()
        lock = folder.lock() if world.is_main else None
        ok = False
        try:
            err = None
            if lock is not None:
                try:
                    lock.acquire()
                    folder.clean_tmp()
                except GanhubError as e:
                    lock, err = None, e
            _agree(world, err)
            yield from self._run(world)
            ok = True
        except GeneratorExit:
            ok = True
            raise
        finally:
            if lock is not None:
                lock.release()
                if not ok and created and self.saved_step is None:  # nothing worth keeping: leave no half-written folder
                    shutil.rmtree(folder.path, ignore_errors=True)

    def _run(self, world: dist.World) -> Iterator[Event]:
        spec, folder, cfg, dev = self.spec, self.folder, self.cfg, self.dev
        ds = self._load_data(world)
        resume_from = folder.checkpoint_step() if self.resume else None  # checked readable by train_spec
        # what config.augment means on this data: as recorded when resuming (exact even if "auto"'s rule has
        # changed since), resolved now for a new run or a folder from before ganhub recorded it
        recorded = folder.spec.augment_policy if resume_from is not None else None
        policy = recorded or resolve_policy(cfg.augment, len(ds), ds.kind) or "off"
        spec = self.spec = dataclasses.replace(spec, augment_policy=policy)
        policy = None if policy == "off" else policy
        augment = (None if policy is None else AdaptiveAugment(policy, cfg.augment_target) if cfg.augment_target
                   else DiffAugment(policy))
        err = None
        if world.is_main:  # the folder's files, config.json first: never a checkpoint without it
            try:
                if resume_from is None:
                    folder.reset()
                    folder.write_config(spec, 0)
                else:
                    folder.truncate_log(resume_from)
            except GanhubError as e:
                err = e
        _agree(world, err)
        s = self._state = self._build(world)
        s.augment = augment
        if resume_from is not None:
            rng = restore_checkpoint(folder, s, world.is_main)
            dist.set_rng(rng, world, dev)
            self.saved_step = s.step
            if s.step >= spec.steps:  # nothing to train; the folder keeps its own record
                if world.is_main:
                    yield Event("done", s.step, spec.steps, message=f"{folder.path} is already at step {s.step} >= "
                                f"{spec.steps}; raise --steps to train further")
                return
        elif world.size > 1:
            torch.manual_seed(spec.seed * world.size + world.rank)  # each rank draws its own latents
        here = f"{describe_device(dev)} in {self.precision}"  # auto resolves per machine: say what ran
        if not s.devices or s.devices[-1] != here:  # a leg on other hardware (or threads) adds itself
            s.devices.append(here)
        batches = Batches(ds, cfg.batch_size, spec.seed, dev, world)
        batches.position = s.data_position
        runner = PhaseRunner(_agreed_divergence(self.v, world), cfg, s.G, s.D, s.opts, device=dev,
                             precision=self.precision, augment=augment,
                             sync_grads=(lambda m: dist.average_grads(m, world)) if world.size > 1 else None)
        snap = Snapshotter(folder, spec, cfg, ds, dev) if world.is_main else None
        if not world.is_main:
            yield from self._loop(world, runner, batches, None, None)
            return
        real, _ = ds.batch(torch.arange(min(PREVIEW_N, len(ds))), "cpu")
        tb = _TensorBoard(folder, self.tensorboard, (s.step + 1) if resume_from is not None else None)
        try:
            with folder.log_writer() as logfile:
                mon = Monitor(spec, cfg, logfile, tb, s.step, s.elapsed, s.cpu_seconds, _diversity(real), self.log_every)
                extra = [f"{len(ds):,} samples"] + ([f"{ds.num_classes} classes"] if cfg.num_classes else [])
                extra += [f"{ds.skipped} unreadable files skipped"] if ds.skipped else []
                note = "; no checkpoint yet, starting at step 0" if self.resume and resume_from is None else ""
                yield Event("start", s.step, spec.steps, message=(
                    f"{self.v.name} on {ds.name} ({', '.join(extra)}) on {dev}"
                    + (f" x {world.size} processes" if world.size > 1 else "")
                    + f", {self.precision}" + (f", {_augment_words(augment)}" if augment else "") + note))
                yield from self._loop(world, runner, batches, mon, snap)
        finally:
            tb.close()

    def _checkpoint_note(self) -> str:
        if self.saved_step is None:
            return "no checkpoint was written yet: start over with lower learning rates (--set lr_d=... lr_g=...)"
        return (f"the last good checkpoint in {self.folder.path} (step {self.saved_step}) is kept: lower the learning "
                "rates (--set lr_d=... lr_g=...) and --resume, or start over")

    def _snapshot(self, world: dist.World, snap: Snapshotter | None, kind: str) -> tuple[Event, torch.Tensor] | None:
        """A preview (rank 0) or a checkpoint (every rank gathers its RNG; rank 0 writes). Errors are agreed."""
        s = self._state
        rng = dist.gather_rng(world, self.dev) if kind == "checkpoint" else None
        if kind == "checkpoint" and isinstance(s.augment, AdaptiveAugment) and world.size > 1:
            s.augment.pool(lambda t: dist.all_sum(t, world), keep=world.is_main)  # the run's counts, on rank 0
        result, err = None, None
        if snap is not None:
            try:
                G = snap.ready(s.G_ema)
                pic, img = snap.grid(G)
                if kind == "checkpoint":
                    snap.save(s, rng, G, pic)
                    self.saved_step = s.step
                result = Event(kind, s.step, self.spec.steps, image=pic), img
            except GanhubError as e:
                err = e
        _agree(world, err)  # previews and checkpoints fall on the same steps on every rank
        if kind == "checkpoint":
            self.saved_step = s.step
        return result

    def _loop(self, world: dist.World, runner: PhaseRunner, batches: Batches, mon: Monitor | None,
              snap: Snapshotter | None) -> Iterator[Event]:
        s, spec, cfg = self._state, self.spec, self.cfg
        mid_step = False
        with _Interrupts(world.size > 1) as interrupts:
            try:
                while s.step < spec.steps:
                    mid_step = True
                    if cfg.lr_rampdown:
                        s.opts.scale_lr(lr_factor(s.step, spec.steps, cfg.lr_rampdown))
                    try:
                        logs = runner.run(batches, s.step)
                    except TrainingDiverged as e:
                        err = TrainingDiverged(f"{str(e).split(';')[0]}; {self._checkpoint_note()}")
                        raise (all_ranks(err) if world.size > 1 else err) from None
                    s.step += 1
                    s.data_position = batches.position
                    if isinstance(s.augment, AdaptiveAugment):
                        s.augment.adjust(s.step, spec.global_batch, (lambda t: dist.all_sum(t, world))
                                         if world.size > 1 else None)
                        logs["augment_p"] = s.augment.p
                    update_ema(s.G_ema, s.G, cfg, s.step * spec.global_batch, spec.global_batch)
                    if world.size > 1:
                        _sync_buffers([s.G, s.D, s.G_ema], world)
                    mid_step = False
                    shown, err = [], None
                    if mon is not None:
                        s.elapsed, s.cpu_seconds = mon.elapsed, mon.cpu_seconds
                        try:
                            shown = list(mon.after_step(s.step, logs))  # writes the log line (a full disk fails here)
                        except GanhubError as e:
                            err = e
                    _agree(world, err)
                    yield from shown
                    is_ckpt = s.step % self.checkpoint_every == 0 or s.step == spec.steps
                    stopping = dist.any_rank(bool(self.stop is not None and self.stop.is_set()) or interrupts.requested,
                                             world)
                    if is_ckpt or stopping or s.step % self.preview_every == 0:
                        if mon is not None:
                            mon.log.flush()
                        shot = self._snapshot(world, snap, "checkpoint" if is_ckpt or stopping else "preview")
                        if shot is not None and (is_ckpt or s.step % self.preview_every == 0):
                            yield from mon.after_snapshot(shot[0], shot[1], logs)
                    if stopping:
                        # a signal here, or (no stop event) on another rank: every rank leaves as interrupted
                        if interrupts.requested or (world.size > 1 and self.stop is None):
                            raise all_ranks(KeyboardInterrupt())
                        if mon is not None:
                            yield Event("done", s.step, spec.steps, elapsed=mon.elapsed, message=(
                                f"stopped at step {s.step}; resume with --resume (checkpoint in {self.folder.path})"))
                        return
                if mon is not None:
                    yield Event("done", s.step, spec.steps, elapsed=mon.elapsed, message=f"finished: {self.folder.path}")
            except (KeyboardInterrupt, GeneratorExit):  # a second Ctrl-C, or the consumer let go (a tab closed)
                if world.size == 1 and not mid_step and s.step != self.saved_step and s.step > 0 and snap is not None:
                    try:  # a stop, so save unless the step was cut in half
                        mon.log.flush()
                        self._snapshot(world, snap, "checkpoint")
                    except GanhubError as e:  # e.g. the folder is gone; the interruption itself must propagate
                        log.warning("could not save a checkpoint in %s on interruption: %s", self.folder.path, e)
                raise
