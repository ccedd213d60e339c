"""The run: what was asked (RunSpec) and where it lives (RunFolder). One folder format everywhere.

A training run's folder, a `weights/` entry and a Hub model repo are the same thing:

    config.json          {"ganhub_format": 2, "variant", "plugin": {package, version}, "config": {full config},
                          "recipe": {dataset, steps, seed, limit, precision, world_size, sync_bn, batch_size,
                                     global_batch, command, augment_policy}, "step", "metrics",
                          "compute": {wall_seconds, cpu_seconds, device (each leg's), processes}}   (what training cost)
    model.safetensors    the EMA generator, ready to sample (huggingface_hub's PyTorchModelHubMixin layout)
    samples.png          a sample grid (the model card shows it)
    README.md            the model card (written by ganhub.hub)
    checkpoint/training.safetensors   G, D, EMA, optimisers, schedulers, step, every rank's RNG state
    checkpoint/log.jsonl one JSON line of losses per logged step
    tensorboard/         TensorBoard event files (when the `tensorboard` extra is installed)
    .lock                held (flock) by the process training into the folder; holds its pid

RunFolder is the only code that reads or writes these files (and the only one that knows README.md's
path); RunSpec.command() is the only renderer of the command that reproduces a run. config.json is
validated key by key on every read, whether written here or pulled from the Hub; format 1 (ganhub before
contract v2) is migrated on read. Only safetensors are read: nothing is ever unpickled. Every write is
atomic (temp file + rename), so a folder killed at any instant is resumable or restartable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ganhub import registry
from ganhub.augment import POLICIES, parse_policy
from ganhub.errors import ConfigError, FolderError, UnknownVariant
from ganhub.variant import BaseConfig, Variant, absent_values, config_fields, config_to_dict, make_config

FORMAT = 2  # 1: before contract v2 (no precision/world_size in the recipe), read and migrated
CONFIG, MODEL, SAMPLES, README = "config.json", "model.safetensors", "samples.png", "README.md"
CHECKPOINT, LOG, TENSORBOARD, LOCK = "checkpoint/training.safetensors", "checkpoint/log.jsonl", "tensorboard", ".lock"
PRECISIONS = ("auto", "bf16", "fp32")  # as ganhub.precision.PRECISIONS (not imported: run sits below it)
BUILTIN_DATASETS = ("fashion-mnist", "mnist", "cifar10", "ring8", "grid25")
MAX_SEED = 2**63 - 1
MAX_STEPS = 10**10
# What the loop did before contract v2, for configs written then (format 1) that lack these v2 fields.
_V1_BEHAVIOUR = {"reuse_fakes": False, "augment": "off", "n_gen": 1, "num_classes": 0}


_UMASK = os.umask(0)
os.umask(_UMASK)


# ---------------------------------------------------------------------------------------------- atomic files
def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` so that `path` holds either the old or the new content, whatever happens."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def state_bytes(module: nn.Module, metadata: dict[str, str] | None = None) -> bytes:
    sd = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    return st_save(sd, metadata=metadata)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return st_load(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as e:
        raise FolderError(f"{path} is not a readable safetensors file ({e}); re-download or re-train it") from None


def load_state_strict(module: nn.Module, sd: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict(strict=True), with an error that lists the mismatched keys and shapes."""
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    shapes = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        detail = "; ".join(
            part for part in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {unexpected[:3]}" if unexpected else "",
                f"shape mismatch {shapes[:3]}" if shapes else "",
            ) if part
        )
        raise FolderError(f"{what} does not match its config ({detail}); the file and config.json come from different models")
    module.load_state_dict(sd, strict=True)


# ---------------------------------------------------------------------------------------------- the spec
def _freeze(x: Any) -> Any:
    if isinstance(x, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in x.items()})
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(v) for v in x)
    return x


def _thaw(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _thaw(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return [_thaw(v) for v in x]
    return x


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_policy(value: Any) -> bool:
    """A resolved augmentation policy: "off" or a DiffAugment policy in canonical spelling (never "auto")."""
    try:
        return isinstance(value, str) and value != "auto" and parse_policy(value) == value
    except ConfigError:
        return False


def _spec_problem(key: str, value: Any) -> str | None:
    """What a recipe value must be, when `value` is not that (None when it is fine)."""
    if key == "dataset":
        return None if isinstance(value, str) and value.strip() else "a dataset name or path (a non-empty string)"
    if key == "steps":
        return None if _is_int(value) and 1 <= value <= MAX_STEPS else f"an integer from 1 to {MAX_STEPS:g}"
    if key == "seed":
        return None if _is_int(value) and 0 <= value <= MAX_SEED else "an integer from 0 to 2**63 - 1"
    if key == "limit":
        return None if value is None or (_is_int(value) and value >= 1) else "an integer >= 1 or null (all images)"
    if key == "precision":
        return None if value in PRECISIONS else "one of " + ", ".join(PRECISIONS)
    if key == "world_size":
        return None if _is_int(value) and 1 <= value <= 65536 else "an integer >= 1 (processes)"
    if key == "sync_bn":
        return None if isinstance(value, bool) else "true or false"
    return None


@dataclass(frozen=True)
class RunSpec:
    """What a run is: everything that decides its result. Saved once in config.json ("recipe" + "config").

    `steps` is the target of the run folder (raising it and resuming continues the same run). `config`
    is the FULL config (every field), so a run can be rebuilt without the plugin's defaults.
    """

    variant: str
    config: Mapping[str, Any]  # the full config, frozen; JSON values (tuples for lists)
    dataset: str
    steps: int
    seed: int = 0
    limit: int | None = None  # the first N images only
    precision: str = "auto"  # auto | bf16 | fp32 (as asked; `auto` resolves per machine)
    world_size: int = 1  # processes (torchrun --nproc-per-node); config batch_size is per process
    sync_bn: bool = False  # SyncBatchNorm across processes
    plugin: Mapping[str, str] = dataclasses.field(default_factory=lambda: MappingProxyType({"package": "?", "version": "?"}))
    # What config.augment became on this run's data ("off" or a DiffAugment policy), set when training starts.
    # Recorded so a resumed run keeps it even if "auto"'s rule changes in a later ganhub; None: not resolved yet
    # (a spec not trained, or a folder written before ganhub recorded it: resolved again at resume).
    augment_policy: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", _freeze(self.config))
        object.__setattr__(self, "plugin", _freeze(self.plugin))

    @classmethod
    def create(cls, variant: Variant, cfg: BaseConfig, *, dataset: str, steps: int, seed: int = 0,
               limit: int | None = None, precision: str = "auto", world_size: int = 1, sync_bn: bool = False) -> RunSpec:
        """A checked spec for a new run of `variant` (installed or not) with `cfg`."""
        spec = cls(variant.name, config_to_dict(cfg), str(dataset).strip(), steps, seed, limit,
                   str(precision).strip().lower() if isinstance(precision, str) else precision,
                   world_size, sync_bn, plugin_of(variant))
        spec.check()
        return spec

    def check(self) -> None:
        """ConfigError (one line) for a value no run can have."""
        names = {"steps": "--steps", "seed": "--seed", "limit": "--limit", "precision": "--precision",
                 "world_size": "the number of processes", "sync_bn": "--sync-bn", "dataset": "--dataset"}
        for key, flag in names.items():
            want = _spec_problem(key, getattr(self, key))
            if want:
                raise ConfigError(f"{flag} must be {want}, got {getattr(self, key)!r}")

    @property
    def batch_size(self) -> int:
        """Per process."""
        return int(self.config.get("batch_size", 0))

    @property
    def global_batch(self) -> int:
        """Images per optimiser step across all processes (what the EMA half-life counts)."""
        return self.batch_size * self.world_size

    def config_dict(self) -> dict[str, Any]:
        return _thaw(self.config)

    def overrides(self, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Config values that differ from `defaults` (every value when None); `data` follows the dataset."""
        out = {}
        for k, v in self.config.items():
            if k == "data":
                continue
            if defaults is None or k not in defaults or _freeze(defaults[k]) != v:
                out[k] = _thaw(v)
        return out

    def _defaults(self) -> Mapping[str, Any] | None:
        try:
            return config_to_dict(registry.get(self.variant).config_cls())
        except UnknownVariant:  # an unregistered Variant object: every value, so nothing depends on defaults
            return None

    def command(self, out: str | Path) -> str:
        """THE reproducing command: `ganhub train ...` (or the torchrun form), every non-default `--set`."""
        prefix = _launcher_prefix(self.world_size)
        parts = shlex.split(prefix) + ["train", self.variant, "--dataset", self.dataset, "--steps", str(self.steps),
                                       "--seed", str(self.seed), "--out", str(out)]
        if self.limit is not None:
            parts += ["--limit", str(self.limit)]
        if self.precision != "auto":
            parts += ["--precision", self.precision]
        if self.sync_bn:
            parts += ["--sync-bn"]
        for key, value in self.overrides(self._defaults()).items():
            parts += ["--set", f"{key}={_cli_value(value)}"]
        return shlex.join(parts)

    def recipe(self, out: str | Path) -> dict[str, Any]:
        """The "recipe" block of config.json."""
        return {"dataset": self.dataset, "steps": self.steps, "seed": self.seed, "limit": self.limit,
                "precision": self.precision, "world_size": self.world_size, "sync_bn": self.sync_bn,
                "batch_size": self.batch_size, "global_batch": self.global_batch, "command": self.command(out),
                **({"augment_policy": self.augment_policy} if self.augment_policy is not None else {})}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> RunSpec:
        """From a validated, migrated config.json dict (RunFolder.meta)."""
        r = meta["recipe"]
        return cls(meta["variant"], meta["config"], r["dataset"], r["steps"], r["seed"], r.get("limit"),
                   r.get("precision", "auto"), r.get("world_size", 1), r.get("sync_bn", False), meta["plugin"],
                   r.get("augment_policy"))


def _cli_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_cli_value(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def _launcher_prefix(world_size: int) -> str:
    try:
        from ganhub.distributed import World, launcher_prefix
    except ImportError:  # pragma: no cover - ganhub.distributed ships with ganhub
        return f"torchrun --nproc-per-node {world_size} -m ganhub.cli" if world_size > 1 else "ganhub"
    return launcher_prefix(World(rank=0, size=world_size))


def plugin_of(variant: Variant) -> dict[str, str]:
    """{package, version} of the distribution providing `variant` (an unregistered object: its module)."""
    try:
        e = registry.entry(variant.name)
        if e.variant is variant or e.variant == variant:
            return {"package": e.package, "version": e.version}
    except UnknownVariant:
        pass
    module = getattr(variant.build, "__module__", None) or "?"
    try:
        from importlib.metadata import packages_distributions, version

        dists = packages_distributions().get(module.split(".")[0], [])
        if dists:
            return {"package": dists[0], "version": version(dists[0])}
    except Exception:  # metadata lookups are best effort; the module name still says where it came from
        pass
    return {"package": module.split(".")[0], "version": "unregistered"}


# ---------------------------------------------------------------------------------------------- config.json
def _short(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = f"a {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def validate_meta(raw: Any, where: Path | str) -> dict[str, Any]:
    """config.json content -> the format-2 dict, or a one-line FolderError naming the key and what it must be."""

    def bad(key: str, want: str, value: Any) -> FolderError:
        return FolderError(f"{where}: `{key}` must be {want}, got {_short(value)}; restore the file (pull it again) or re-train")

    if not isinstance(raw, dict):
        raise FolderError(f"{where} must hold a JSON object, got {type(raw).__name__}; restore the file or re-train")
    meta = dict(raw)
    fmt = meta.get("ganhub_format", 1)
    if not _is_int(fmt) or fmt < 1:
        raise bad("ganhub_format", f"an integer from 1 to {FORMAT}", fmt)
    if fmt > FORMAT:
        raise FolderError(f"{where} was written by a newer ganhub (format {fmt}, this one reads up to {FORMAT}); "
                          "upgrade ganhub (pip install -U ganhub)")
    if "variant" not in meta:
        raise FolderError(f"{where} is not a ganhub run config (no `variant`); point to a run folder, a weights name or a Hub repo")
    if not isinstance(meta["variant"], str) or not meta["variant"].strip():
        raise bad("variant", "a variant name (a non-empty string)", meta["variant"])
    if not isinstance(meta.get("config"), dict):
        raise bad("config", "an object of config values", meta.get("config"))
    for key, value in meta["config"].items():  # config fields are numbers, strings, booleans or tuples of them
        items = value if isinstance(value, list) else [value]
        if not all(x is None or isinstance(x, (bool, int, float, str)) for x in items):
            raise bad(f"config.{key}", "a number, string, true/false or a list of those", value)
    plugin = meta.get("plugin", {"package": "?", "version": "?"})
    if not (isinstance(plugin, dict) and all(isinstance(plugin.get(k), str) for k in ("package", "version"))):
        raise bad("plugin", 'an object {"package": ..., "version": ...} of strings', plugin)
    meta["plugin"] = {"package": plugin["package"], "version": plugin["version"]}
    step = meta.get("step", 0)
    if not _is_int(step) or step < 0:
        raise bad("step", "an integer >= 0", step)
    meta["step"] = step
    if not isinstance(meta.get("metrics", {}), dict):
        raise bad("metrics", "an object of measured metrics", meta["metrics"])
    if "compute" in meta:
        compute = meta["compute"]
        if not isinstance(compute, dict):
            raise bad("compute", "an object {wall_seconds, cpu_seconds, device, processes}", compute)
        for key in ("wall_seconds", "cpu_seconds"):
            value = compute.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise bad(f"compute.{key}", "a number of seconds >= 0, or null", value)
        if not isinstance(compute.get("device", ""), str):
            raise bad("compute.device", "a string", compute["device"])
        if not _is_int(compute.get("processes", 1)) or compute.get("processes", 1) < 1:
            raise bad("compute.processes", "an integer >= 1", compute["processes"])
    if "recipe" in meta:
        recipe = meta["recipe"]
        if not isinstance(recipe, dict):
            raise bad("recipe", "an object (dataset, steps, seed, ...)", recipe)
        recipe = dict(recipe)
        if fmt == 1:  # the loop before v2: fp32 on CPU (bf16 only on CUDA), one process
            recipe.setdefault("precision", "fp32")
        recipe.setdefault("precision", "auto")
        recipe.setdefault("world_size", 1)
        recipe.setdefault("sync_bn", False)
        recipe.setdefault("limit", None)
        recipe.setdefault("seed", 0)
        for key in ("dataset", "steps", "seed", "limit", "precision", "world_size", "sync_bn"):
            if key not in recipe:
                raise bad(f"recipe.{key}", "present", None)
            want = _spec_problem(key, recipe[key])
            if want:
                raise bad(f"recipe.{key}", want, recipe[key])
        if not isinstance(recipe.get("command", ""), str):
            raise bad("recipe.command", "a string", recipe["command"])
        policy = recipe.get("augment_policy")
        if policy is not None and not _is_policy(policy):
            raise bad("recipe.augment_policy", f"off or a comma list of {', '.join(POLICIES)}", policy)
        meta["recipe"] = recipe
    if fmt == 1:
        meta["config"] = {**{k: v for k, v in _V1_BEHAVIOUR.items() if k not in meta["config"]}, **meta["config"]}
        meta["_v1_keys"] = [k for k in _V1_BEHAVIOUR if k not in raw["config"]]
    meta["ganhub_format"] = FORMAT
    return meta


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def describe_compute(meta: Mapping[str, Any]) -> str | None:
    """config.json's compute record in words ("14.2 min wall-clock, 27.9 min of CPU time on CPU (..., 2 threads)"),
    or None when the run did not record it (trained before ganhub did)."""
    compute = meta.get("compute")
    if not isinstance(compute, Mapping) or not isinstance(compute.get("wall_seconds"), (int, float)):
        return None
    k = compute.get("processes", 1)
    parts = [f"{_duration(compute['wall_seconds'])} wall-clock"]
    if isinstance(compute.get("cpu_seconds"), (int, float)):
        parts.append(f"{_duration(compute['cpu_seconds'])} of CPU time" + (" (rank 0)" if k > 1 else ""))
    where = compute.get("device") or "an unrecorded device"
    return ", ".join(parts) + f" on {where}" + (f" x {k} processes" if k > 1 else "")


# ---------------------------------------------------------------------------------------------- the folder
class RunFolder:
    """A run folder (or weights entry, or Hub snapshot). The only code that touches its files."""

    def __init__(self, path: str | Path):
        self._given, self.path = path, Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # paths
    config_path = property(lambda self: self.path / CONFIG)
    model_path = property(lambda self: self.path / MODEL)
    samples_path = property(lambda self: self.path / SAMPLES)
    readme_path = property(lambda self: self.path / README)
    checkpoint_path = property(lambda self: self.path / CHECKPOINT)
    log_path = property(lambda self: self.path / LOG)
    tensorboard_dir = property(lambda self: self.path / TENSORBOARD)
    lock_path = property(lambda self: self.path / LOCK)

    def has_config(self) -> bool:
        return self.config_path.is_file()

    def has_model(self) -> bool:
        return self.model_path.is_file()

    def has_checkpoint(self) -> bool:
        """Something is at checkpoint/training.safetensors (read_checkpoint says whether it is readable)."""
        return self.checkpoint_path.exists()

    def is_run(self) -> bool:
        """True when config.json is a readable ganhub run config (e.g. not the classifier's)."""
        try:
            self.meta  # noqa: B018 - validation is the point
        except FolderError:
            return False
        return True

    # ----------------------------------------------------------------------- config.json
    @property
    def meta(self) -> dict[str, Any]:
        """config.json, validated key by key and migrated to the current format."""
        if not self.has_config():
            raise FolderError(f"{self.path} has no {CONFIG}; point to a ganhub run folder, a weights name or a Hub repo id")
        try:
            raw = json.loads(self.config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise FolderError(f"{self.config_path} is not valid JSON ({e.__class__.__name__}); restore it from the Hub or re-train") from None
        except OSError as e:
            raise FolderError(f"cannot read {self.config_path} ({e.strerror or e}); check its permissions") from None
        return validate_meta(raw, self.config_path)

    @property
    def spec(self) -> RunSpec:
        """The RunSpec this folder records (config completed with the plugin's fields when it is installed)."""
        meta = self.meta
        if "recipe" not in meta:
            raise FolderError(f"{self.config_path} has no `recipe` (how it was trained), so it cannot be resumed or re-run")
        try:
            v = registry.get(meta["variant"])
        except UnknownVariant:  # not installed: the recorded values as they are
            return RunSpec.from_meta(meta)
        meta["config"] = config_to_dict(self._config(v, meta))
        return RunSpec.from_meta(meta)

    @property
    def step(self) -> int:
        return self.meta["step"]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.meta.get("metrics", {})

    def variant(self) -> Variant:
        """The installed variant this folder needs (FolderError naming the package when it is missing)."""
        return variant_for(self.meta, self.path)

    def config(self, variant: Variant | None = None) -> BaseConfig:
        """The recorded config as `variant`'s config class (FolderError naming the bad key)."""
        meta = self.meta
        return self._config(variant or self.variant(), meta)

    def _config(self, variant: Variant, meta: dict[str, Any]) -> BaseConfig:
        values = dict(meta["config"])
        known = config_fields(variant.config_cls)
        for k in meta.get("_v1_keys", []):  # migrated v1 values for fields this plugin does not have
            if k not in known:
                values.pop(k, None)
        for k, v in absent_values(variant.config_cls).items():  # fields newer than the folder
            values.setdefault(k, v)
        try:
            return make_config(variant.config_cls, values)
        except ConfigError as e:
            raise FolderError(f"{self.config_path}: {e} (was it written by another version of the plugin?)") from None

    def write_config(self, spec: RunSpec, step: int, compute: Mapping[str, Any] | None = None) -> None:
        """config.json for `spec` at `step`, keeping the metrics (and the compute record, unless `compute`
        replaces it) recorded for this very step. `compute`: what training cost so far, every leg included."""
        old: dict[str, Any] = {}
        if self.has_config():
            try:
                current = self.meta
                old = current if current["step"] == step else {}
            except FolderError:
                pass
        meta = {"ganhub_format": FORMAT, "variant": spec.variant, "plugin": dict(spec.plugin),
                "config": spec.config_dict(), "recipe": spec.recipe(self.path), "step": step}
        compute = compute if compute is not None else old.get("compute")
        if compute:
            meta["compute"] = dict(compute)
        if old.get("metrics"):
            meta["metrics"] = old["metrics"]
        self._write(self.config_path, (json.dumps(meta, indent=2) + "\n").encode())

    def write_metrics(self, metrics: Mapping[str, Any]) -> Path:
        """Merge `metrics` ({name: {value, protocol, command, ...}}) into config.json's "metrics" (atomic)."""
        if not self.has_config():
            raise FolderError(f"{self.path} has no {CONFIG} to record metrics in")
        try:
            raw = json.loads(self.config_path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            raw = None
        validate_meta(raw, self.config_path)  # refuse to extend a malformed file; keeps its own format
        raw.setdefault("metrics", {}).update(metrics)
        self._write(self.config_path, (json.dumps(raw, indent=2) + "\n").encode())
        return self.config_path

    # ----------------------------------------------------------------------- weights and images
    def save_model(self, G: nn.Module, spec: RunSpec, step: int, compute: Mapping[str, Any] | None = None) -> None:
        """model.safetensors (the EMA generator) then config.json at `step` (with `compute`, see write_config)."""
        self._write(self.model_path, state_bytes(G, {"format": "pt", "ganhub_variant": spec.variant, "step": str(step)}))
        self.write_config(spec, step, compute)

    def load_model(self, G: nn.Module) -> nn.Module:
        if not self.has_model():
            raise FolderError(f"{self.path} has no {MODEL}; train it first or pull it again")
        load_state_strict(G, read_safetensors(self.model_path), str(self.model_path))
        return G

    def write_samples(self, png: bytes) -> None:
        self._write(self.samples_path, png)

    # ----------------------------------------------------------------------- checkpoint
    def write_checkpoint(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self._write(self.checkpoint_path, st_save(tensors, metadata={"ganhub": json.dumps(meta)}))

    def read_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        if not self.has_checkpoint():
            raise FolderError(f"{self.path} has no {CHECKPOINT} to resume from; train without --resume")
        try:
            data = self.checkpoint_path.read_bytes()
            tensors = st_load(data)
            n = int.from_bytes(data[:8], "little")  # safetensors: u64 header size, then the JSON header
            header = json.loads(data[8 : 8 + n])
            meta = json.loads(header.get("__metadata__", {}).get("ganhub", "null"))
        except (SafetensorError, ValueError, OSError, json.JSONDecodeError) as e:
            raise FolderError(f"{self.checkpoint_path} is not a readable checkpoint ({e}); start the run again") from None
        if not isinstance(meta, dict) or not _is_int(meta.get("step")):
            raise FolderError(f"{self.checkpoint_path} was written by an older ganhub or is damaged; start the run again")
        return tensors, meta

    def checkpoint_step(self) -> int | None:
        """The step of the checkpoint, None when there is none (or it is unreadable)."""
        if not self.has_checkpoint():
            return None
        try:
            with open(self.checkpoint_path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(min(n, 2**24)))
            return int(json.loads(header["__metadata__"]["ganhub"])["step"])
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
            return None

    # ----------------------------------------------------------------------- log
    def read_log(self) -> list[dict[str, float]]:
        """The loss log (one dict per logged step); a line cut by a crash is skipped."""
        if not self.log_path.is_file():
            return []
        rows = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and _is_int(row.get("step")):
                rows.append(row)
        return rows

    def truncate_log(self, step: int) -> None:
        """Keep only the log lines up to `step` (those after the checkpoint resumed from are redone)."""
        if not self.log_path.exists():
            return
        keep = [json.dumps(r) for r in self.read_log() if r["step"] <= step]
        self._write(self.log_path, ("\n".join(keep) + "\n").encode() if keep else b"")

    @contextlib.contextmanager
    def log_writer(self) -> Iterator[LogWriter]:
        self._mkdir(self.log_path.parent)
        try:
            f = open(self.log_path, "a")  # noqa: SIM115 - closed below
        except OSError as e:
            raise self._os_error(e, self.log_path) from None
        try:
            yield LogWriter(f, self)
        finally:
            with contextlib.suppress(OSError):
                f.close()

    # ----------------------------------------------------------------------- lifecycle
    def check_target(self) -> None:
        """Refuse, without writing anything, an --out that names a file or a place that cannot be written."""
        p = self.path
        if not str(self._given).strip():
            raise FolderError("--out is empty; name the run folder, e.g. --out runs/my-run")
        if p.exists() and not p.is_dir():
            raise FolderError(f"--out {p} is a file, not a folder; choose a folder path")
        probe = p
        while not probe.exists():
            if probe.parent == probe:
                break
            probe = probe.parent
        if probe.exists() and not probe.is_dir():
            raise FolderError(f"--out {p} cannot be created: {probe} is a file; choose another --out")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise FolderError(f"--out {p}: {probe} is read-only (permission denied); choose another --out")

    def lock(self) -> RunLock:
        """Exclusive right to train into this folder (raises FolderError when another process holds it)."""
        return RunLock(self)

    def clean_tmp(self) -> list[Path]:
        """Remove temp files a killed write left (`.NAME.*.tmp`). Call only while holding the lock."""
        removed = []
        for d in (self.path, self.path / "checkpoint"):
            if d.is_dir():
                for p in d.glob(".*.tmp"):
                    with contextlib.suppress(OSError):
                        p.unlink()
                        removed.append(p)
        return removed

    def reset(self) -> None:
        """Forget a run that never checkpointed (or lost its config) before training into it afresh."""
        for p in (self.checkpoint_path, self.log_path, self.samples_path):
            try:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                p.unlink(missing_ok=True)
            except OSError as e:
                raise self._os_error(e, p) from None
        if self.tensorboard_dir.is_dir():
            for p in self.tensorboard_dir.glob("events.out.tfevents.*"):
                with contextlib.suppress(OSError):
                    p.unlink()

    # ----------------------------------------------------------------------- writes
    def _mkdir(self, d: Path) -> None:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise FolderError(f"cannot create {d}: a file stands in its path; choose another --out") from None
        except OSError as e:
            raise self._os_error(e, d) from None

    def _write(self, path: Path, data: bytes) -> None:
        self._mkdir(path.parent)
        try:
            atomic_write(path, data)
        except OSError as e:
            raise self._os_error(e, path) from None

    def _os_error(self, e: OSError, path: Path) -> FolderError:
        import errno

        why = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
               errno.EROFS: "the place is read-only", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied"}.get(e.errno, e.strerror or str(e) or type(e).__name__)
        return FolderError(f"cannot write {path}: {why}; the files already in {self.path} are kept "
                           "(free space or fix permissions, then --resume, or choose another --out)")


class LogWriter:
    """Appends one JSON line per logged step to checkpoint/log.jsonl."""

    def __init__(self, f, folder: RunFolder):
        self._f, self._folder = f, folder

    def write(self, row: Mapping[str, Any]) -> None:
        try:
            self._f.write(json.dumps(dict(row)) + "\n")
        except OSError as e:
            raise self._folder._os_error(e, self._folder.log_path) from None

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as e:
            raise self._folder._os_error(e, self._folder.log_path) from None


class RunLock:
    """An exclusive lock on a run folder: `.lock` holding the trainer's pid, locked with flock.

    The kernel drops a flock when its process dies, so a lock left by a killed run is simply taken over.
    Where flock is missing (Windows) an O_EXCL file with the pid is used and a dead pid's file is taken over.
    """

    def __init__(self, folder: RunFolder):
        self.folder, self._fd = folder, None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _busy(self, pid: str) -> FolderError:
        who = f"process {pid}" if pid else "another process"
        return FolderError(f"{self.folder.path} is in use: {who} is training into it; wait for it to finish "
                           "(or stop it) or choose another --out")

    def acquire(self) -> None:
        path = self.folder.lock_path
        self.folder._mkdir(path.parent)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self._acquire_excl(path)
        for _ in range(10):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise self.folder._os_error(e, path) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                raise self._busy(pid) from None
            try:  # the holder before us may have unlinked the file we opened: lock the one on disk
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self._fd = fd
                return None
            os.close(fd)
        raise self._busy("")

    def _acquire_excl(self, path: Path) -> None:  # pragma: no cover - Windows
        for _ in range(2):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pid = path.read_text(errors="replace").strip()
                if pid.isdigit() and not _alive(int(pid)):
                    path.unlink(missing_ok=True)  # a dead trainer's lock: take it over
                    continue
                raise self._busy(pid) from None
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return
        raise self._busy("")

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.folder.lock_path.unlink()  # unlink while still holding it; see the inode check above
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None


def _alive(pid: int) -> bool:  # pragma: no cover - Windows path of RunLock
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# ---------------------------------------------------------------------------------------------- compatibility
# The functions below predate RunFolder; they delegate to it so every reader shares its validation.
def read_config(folder: str | Path) -> dict[str, Any]:
    """RunFolder(folder).meta: config.json validated key by key, migrated to the current format."""
    return RunFolder(folder).meta


def variant_for(meta: dict[str, Any], where: Path) -> Variant:
    """The installed variant a folder needs; else FolderError saying why it failed to load, or what to install."""
    try:
        return registry.get(meta["variant"])
    except UnknownVariant as e:
        if any(getattr(f, "name", None) == meta["variant"] for f in registry.failures()):
            raise FolderError(f"{where} needs {e}") from None  # installed but broken: the registry says why
        pkg = (meta.get("plugin") or {}).get("package", "?")
        pkg = pkg if pkg != "?" else f"the plugin providing {meta['variant']!r}"
        raise FolderError(f"{where} needs variant {meta['variant']!r}, which is not installed; `pip install {pkg}` and retry") from None


def config_from_meta(variant: Variant, meta: dict[str, Any], where: Path) -> BaseConfig:
    return RunFolder(where)._config(variant, meta)


def save_generator(folder: str | Path, G: nn.Module, *, variant: Variant, cfg: BaseConfig,
                   recipe: Mapping[str, Any], step: int) -> Path:
    """Write model.safetensors and config.json for a generator trained elsewhere (`recipe`: dataset, steps, seed, ...)."""
    spec = RunSpec.create(variant, cfg, dataset=recipe.get("dataset", "?"), steps=max(1, int(recipe.get("steps", step) or 1)),
                          seed=int(recipe.get("seed", 0)), limit=recipe.get("limit"),
                          precision=recipe.get("precision", "auto"), world_size=int(recipe.get("world_size", 1)))
    f = RunFolder(folder)
    f.save_model(G, spec, step)
    return f.path
