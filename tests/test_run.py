"""RunSpec and RunFolder: the one folder format, its validation, migration, lock and log."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ganhub import registry
from ganhub.cli import build_parser
from ganhub.errors import ConfigError, FolderError
from ganhub.run import FORMAT, RunFolder, RunSpec, save_generator, validate_meta
from ganhub.sample import sample
from ganhub.source import bundled, load_generator, weights_dir
from ganhub.testing import tiny_config
from ganhub.variant import build_models


@pytest.fixture
def folder(tmp_path):
    v = registry.get("sngan")
    cfg = tiny_config(v)
    torch.manual_seed(0)
    G, _ = build_models(v, cfg)
    save_generator(tmp_path / "f", G, variant=v, cfg=cfg, recipe={"dataset": "fashion-mnist", "steps": 1, "seed": 0}, step=1)
    return tmp_path / "f"


def rewrite(folder, **changes):
    meta = json.loads((folder / "config.json").read_text())
    meta.update(changes)
    (folder / "config.json").write_text(json.dumps(meta))


def test_round_trip_is_exact(folder):
    meta = RunFolder(folder).meta
    assert meta["variant"] == "sngan" and meta["plugin"] == {"package": "ganhub-sngan", "version": registry.entry("sngan").version}
    assert meta["config"]["g_width"] == 4 and meta["ganhub_format"] == FORMAT == 2
    a, b = load_generator(folder), load_generator(folder)
    assert torch.equal(sample(a.G, 4, 1), sample(b.G, 4, 1)) and not a.G.training


def test_bundled_weights_load_by_name():
    assert "dcgan" in bundled()
    loaded = load_generator("dcgan")
    assert loaded.path.name == "dcgan" and sample(loaded.G, 2, 0).shape == (2, 1, 32, 32)


def test_format_1_is_migrated_on_read_and_keeps_what_the_old_loop_did(tmp_path):
    # config.json of the weights/dcgan that ganhub shipped before contract v2 (dcgan plugin 0.1)
    raw = json.loads((Path(__file__).parent / "fixtures" / "format1-dcgan-config.json").read_text())
    assert raw["ganhub_format"] == 1 and "reuse_fakes" not in raw["config"]
    (tmp_path / "dcgan").mkdir()
    (tmp_path / "dcgan" / "config.json").write_text(json.dumps(raw))
    f = RunFolder(tmp_path / "dcgan")
    spec = f.spec
    assert f.meta["ganhub_format"] == 2 and f.metrics["fid"]["value"] == raw["metrics"]["fid"]["value"]
    assert (spec.precision, spec.world_size, spec.sync_bn, spec.global_batch) == ("fp32", 1, False, 64)
    assert spec.config["reuse_fakes"] is False and spec.config["augment"] == "off"  # fresh fakes, no DiffAugment
    command = spec.command("runs/weights-dcgan")
    assert command.startswith("ganhub train dcgan --dataset fashion-mnist --steps 5000 --seed 0 --out runs/weights-dcgan")
    assert "--precision fp32" in command and "--set augment=off" in command and "--set reuse_fakes=false" in command
    assert f.config().reuse_fakes is False


def test_command_renders_every_non_default_value_and_parses_back():
    v = registry.get("dcgan")
    cfg = v.make_config(lr_d=3e-4, betas=(0.5, 0.9), label_smoothing=0.1, batch_size=32)
    spec = RunSpec.create(v, cfg, dataset="my images/", steps=10, seed=7, limit=100, precision="bf16")
    command = spec.command("runs/a b")
    argv = shlex.split(command)
    assert argv[:3] == ["ganhub", "train", "dcgan"] and "'runs/a b'" in command and "'my images/'" in command
    args = build_parser().parse_args(argv[1:])
    assert (args.dataset, args.steps, args.seed, args.limit, args.precision) == ("my images/", 10, 7, 100, "bf16")
    sets = dict(s.split("=", 1) for s in args.set)
    assert sets == {"lr_d": "0.0003", "betas": "0.5,0.9", "label_smoothing": "0.1", "batch_size": "32"}
    assert v.make_config(**sets) == cfg  # the --set values give back the very same config
    assert spec.global_batch == 32
    two = RunSpec.create(v, cfg, dataset="fashion-mnist", steps=10, world_size=2, sync_bn=True)
    assert two.command("r").startswith("torchrun --nproc-per-node 2 -m ganhub.cli train dcgan ") and "--sync-bn" in two.command("r")
    assert two.global_batch == 64 and two.recipe("r")["global_batch"] == 64


def test_spec_is_frozen_and_checked():
    v = registry.get("dcgan")
    spec = RunSpec.create(v, v.make_config(), dataset="mnist", steps=3)
    with pytest.raises(AttributeError):
        spec.steps = 4
    with pytest.raises(TypeError):
        spec.config["lr_d"] = 1.0
    for kw, msg in [(dict(steps=0), "--steps"), (dict(steps=True), "--steps"), (dict(steps=2, seed=-1), "--seed"),
                    (dict(steps=2, limit=0), "--limit"), (dict(steps=2, precision="fp16"), "--precision"),
                    (dict(steps=2, world_size=0), "processes")]:
        with pytest.raises(ConfigError, match=msg):
            RunSpec.create(v, v.make_config(), dataset="mnist", **kw)


@pytest.mark.parametrize("change, message", [
    (dict(config=[1, 2]), r"`config` must be an object of config values, got \[1, 2\]"),
    (dict(config=None), "`config` must be an object of config values, got null"),
    (dict(variant=["sngan"]), r"`variant` must be a variant name \(a non-empty string\), got \[\"sngan\"\]"),
    (dict(variant=""), "`variant` must be a variant name"),
    (dict(plugin="ganhub-sngan"), "`plugin` must be an object"),
    (dict(step=-1), "`step` must be an integer >= 0"),
    (dict(step="3"), "`step` must be an integer >= 0"),
    (dict(metrics=[]), "`metrics` must be an object"),
    (dict(recipe=[]), "`recipe` must be an object"),
    (dict(recipe={"dataset": "fashion-mnist", "steps": "ten", "seed": 0}), "`recipe.steps` must be an integer from 1"),
    (dict(recipe={"dataset": 5, "steps": 1}), "`recipe.dataset` must be a dataset name"),
    (dict(recipe={"dataset": "x", "steps": 1, "limit": -1}), "`recipe.limit` must be an integer >= 1 or null"),
    (dict(recipe={"dataset": "x", "steps": 1, "precision": "fp8"}), "`recipe.precision` must be one of auto, bf16, fp32"),
    (dict(recipe={"dataset": "x", "steps": 1, "world_size": 0}), "`recipe.world_size` must be an integer >= 1"),
    (dict(recipe={"dataset": "x", "steps": 1, "augment_policy": "auto"}), "`recipe.augment_policy` must be off or a comma"),
    (dict(recipe={"dataset": "x", "steps": 1, "augment_policy": "flip"}), "`recipe.augment_policy` must be off or a comma"),
    (dict(ganhub_format=99), "written by a newer ganhub"),
    (dict(ganhub_format="2"), "`ganhub_format` must be an integer"),
])
def test_config_json_is_validated_key_by_key(folder, change, message):
    rewrite(folder, **change)
    with pytest.raises(FolderError, match=message) as e:
        load_generator(folder)
    assert "\n" not in str(e.value) and "config.json" in str(e.value)


def test_config_json_that_is_not_an_object_or_not_json(folder):
    (folder / "config.json").write_text("[1, 2, 3]")
    with pytest.raises(FolderError, match="must hold a JSON object, got list"):
        load_generator(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(FolderError, match="not valid JSON"):
        load_generator(folder)
    (folder / "config.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(FolderError, match="not valid JSON"):
        load_generator(folder)
    with pytest.raises(FolderError, match="not a ganhub run config"):
        validate_meta({"kind": "fmnist-classifier"}, "weights/fmnist-classifier/config.json")
    assert not RunFolder(weights_dir() / "fmnist-classifier").is_run() and RunFolder(weights_dir() / "dcgan").is_run()


def test_deeply_nested_or_non_scalar_config_values_are_one_line(folder):
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FolderError, match="not valid JSON"):
        load_generator(folder)
    (folder / "config.json").write_text(json.dumps({"variant": "sngan", "config": {"g_width": {"a": [[[1]]]}}}))
    with pytest.raises(FolderError, match="`config.g_width` must be a number, string, true/false or a list of those"):
        load_generator(folder)


def test_missing_plugin_names_the_package(folder):
    rewrite(folder, variant="bigbigan", plugin={"package": "ganhub-bigbigan", "version": "1.0"})
    with pytest.raises(FolderError, match="pip install ganhub-bigbigan"):
        load_generator(folder)


def test_strict_keys_and_shapes(folder):
    sd = load_file(folder / "model.safetensors")
    key = next(iter(sd))
    save_file({k: v for k, v in sd.items() if k != key}, folder / "model.safetensors")
    with pytest.raises(FolderError, match=r"missing \['" + key.replace(".", r"\.")):
        load_generator(folder)
    sd[key] = torch.zeros(3, 3)
    save_file(sd, folder / "model.safetensors")
    with pytest.raises(FolderError, match="shape mismatch"):
        load_generator(folder)


def test_config_mismatch_and_bad_values_are_clear(folder):
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["g_width"] = 8
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(FolderError, match="does not match its config"):
        load_generator(folder)
    meta["config"]["surprise"] = 1
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(FolderError, match="unknown config key 'surprise'"):
        load_generator(folder)
    del meta["config"]["surprise"]
    meta["config"]["lr_d"] = -1
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(FolderError, match="config.json: .*lr_d"):
        load_generator(folder)


def test_pickles_are_never_read(folder):
    (folder / "model.safetensors").write_bytes(b"\x80\x04\x95 a pickle, not safetensors")
    with pytest.raises(FolderError, match="not a readable safetensors file"):
        load_generator(folder)


def test_write_metrics_merges_and_keeps_the_rest(folder):
    f = RunFolder(folder)
    f.write_metrics({"fid": {"value": 12.5, "command": "ganhub eval x"}})
    f.write_metrics({"kid": {"value": 0.1}})
    assert set(f.metrics) == {"fid", "kid"} and f.metrics["fid"]["value"] == 12.5
    assert f.spec.dataset == "fashion-mnist" and f.step == 1
    rewrite(folder, config=None)
    with pytest.raises(FolderError, match="`config`"):
        f.write_metrics({"is": {"value": 1.0}})


def test_metrics_of_the_same_step_survive_a_rewrite_of_the_config(folder):
    f = RunFolder(folder)
    f.write_metrics({"fid": {"value": 1.0}})
    f.write_config(f.spec, 1)
    assert "fid" in f.metrics
    f.write_config(f.spec, 2)  # a new step: the old measurement no longer describes the model
    assert f.metrics == {}


def test_lock_refuses_a_second_trainer_and_takes_over_a_dead_ones(tmp_path):
    f = RunFolder(tmp_path / "r")
    with f.lock():
        assert f.lock_path.read_text().strip() == str(os.getpid())
        with pytest.raises(FolderError, match=f"in use: process {os.getpid()} is training into it"):
            f.lock().acquire()
    assert not f.lock_path.exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    f.lock_path.write_text(dead.stdout)  # a killed trainer's lock file: no process holds it
    with f.lock():
        assert f.lock_path.read_text().strip() == str(os.getpid())


def test_stale_temp_files_are_cleaned(tmp_path):
    f = RunFolder(tmp_path / "r")
    (tmp_path / "r" / "checkpoint").mkdir(parents=True)
    stale = [tmp_path / "r" / ".model.safetensors.abc123.tmp", tmp_path / "r" / "checkpoint" / ".training.safetensors.x.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    (tmp_path / "r" / "notes.tmp").write_text("mine")
    assert sorted(f.clean_tmp()) == sorted(stale)
    assert not any(p.exists() for p in stale) and (tmp_path / "r" / "notes.tmp").exists()


def test_log_tolerates_a_cut_line_and_truncates(tmp_path):
    f = RunFolder(tmp_path / "r")
    with f.log_writer() as log:
        for i in range(1, 5):
            log.write({"step": i, "loss_D": 0.5})
    with open(f.log_path, "a") as fh:
        fh.write('{"step": 5, "loss_')  # killed mid-line
    assert [r["step"] for r in f.read_log()] == [1, 2, 3, 4]
    f.truncate_log(3)
    assert [r["step"] for r in f.read_log()] == [1, 2, 3] and f.log_path.read_text().endswith("\n")


def test_checkpoint_step_reads_only_the_header(tmp_path):
    f = RunFolder(tmp_path / "r")
    assert f.checkpoint_step() is None
    f.write_checkpoint({"x": torch.zeros(2)}, {"step": 7})
    assert f.checkpoint_step() == 7
    tensors, meta = f.read_checkpoint()
    assert meta == {"step": 7} and torch.equal(tensors["x"], torch.zeros(2))
    f.checkpoint_path.write_bytes(b"garbage")
    assert f.checkpoint_step() is None
    with pytest.raises(FolderError, match="not a readable checkpoint"):
        f.read_checkpoint()


def test_a_field_newer_than_the_folder_reads_as_what_the_folder_meant(tmp_path):
    """stylegan-lite 0.2 added g_width_top (new runs narrow toward high resolution); a config.json written
    before it holds a model with g_width everywhere, and must keep loading as that model."""
    v = registry.get("stylegan-lite")
    old = v.make_config(g_width=64, g_width_top=0, w_dim=8, z_dim=8, mapping_layers=1)
    torch.manual_seed(0)
    G, _ = build_models(v, old)
    save_generator(tmp_path / "f", G, variant=v, cfg=old, recipe={"dataset": "fashion-mnist", "steps": 1, "seed": 0}, step=1)
    meta = json.loads((tmp_path / "f" / "config.json").read_text())
    del meta["config"]["g_width_top"]  # as plugin 0.1 wrote it
    (tmp_path / "f" / "config.json").write_text(json.dumps(meta))
    loaded = load_generator(tmp_path / "f")
    assert loaded.cfg.g_width_top == 0 and loaded.G.const.shape == (64, 4, 4)
    assert torch.equal(sample(loaded.G, 2, 0), sample(G.eval(), 2, 0))
    new = v.make_config(g_width=64, w_dim=8, z_dim=8, mapping_layers=1)  # a new run gets the new default
    assert new.g_width_top == 16 and build_models(v, new)[0].to_rgb[-1].weight.shape[1] == 16
