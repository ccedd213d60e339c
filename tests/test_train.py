import dataclasses
import errno
import json
import re
import shlex
import shutil
import threading

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from ganhub import augment, registry
from ganhub.cli import main
from ganhub.errors import ConfigError, DatasetError, FolderError, TrainingDiverged
from ganhub.hub import write_model_card
from ganhub.run import RunFolder, RunSpec
from ganhub.sample import sample
from ganhub.source import load_generator, weights_dir
from ganhub.step import lr_factor
from ganhub.train import Event, estimate_memory, train, train_spec, update_ema

LIMIT = 64  # a small slice of Fashion-MNIST keeps every run to seconds


def tiny(name: str) -> dict:
    return dict(registry.get(name).test_config)


def run(name, out, steps, **kw):
    kw.setdefault("overrides", tiny(name))
    kw.setdefault("tensorboard", False)
    if not kw.get("resume"):
        kw.setdefault("precision", "fp32")  # the same arithmetic on every machine ("auto" is bf16 on some CPUs)
    return list(train(name, dataset="fashion-mnist", steps=steps, out=out, limit=LIMIT, **kw))


def same_files(a, b) -> list[str]:
    """Names of tensors that differ between the checkpoints and EMA generators of two run folders."""
    diff = []
    for name in ("checkpoint/training.safetensors", "model.safetensors"):
        ta, tb = load_file(a / name), load_file(b / name)
        assert ta.keys() == tb.keys(), name
        diff += [f"{name}:{k}" for k in ta if not torch.equal(ta[k], tb[k])]
    return diff


@pytest.mark.parametrize("name", ["vanilla", "dcgan", "wgan-gp", "sngan", "stylegan-lite"])
def test_few_steps_give_a_loadable_folder(tmp_path, name):
    events = run(name, tmp_path / "run", 4, preview_every=1, checkpoint_every=2)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "preview" in kinds and "checkpoint" in kinds
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == [1, 2, 3, 4] and all(e.losses for e in steps)
    f = RunFolder(tmp_path / "run")
    meta, spec = f.meta, f.spec
    assert meta["variant"] == name and meta["plugin"]["package"] == f"ganhub-{name}" and meta["step"] == 4
    assert (spec.dataset, spec.steps, spec.seed, spec.limit, spec.world_size) == ("fashion-mnist", 4, 0, LIMIT, 1)
    assert meta["recipe"]["global_batch"] == tiny(name)["batch_size"] and meta["ganhub_format"] == 2
    assert [r["step"] for r in f.read_log()] == [1, 2, 3, 4]
    loaded = load_generator(tmp_path / "run")
    x = sample(loaded.G, 5, seed=3)
    assert x.shape == (5, 1, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, sample(loaded.G, 5, seed=3))


@pytest.mark.parametrize("name", ["dcgan", "stylegan-lite", "wgan-gp"])
def test_resume_is_exact(tmp_path, name):
    """2N steps in one go == N steps, stop, resume to 2N: bit-identical weights, optimiser and RNG."""
    run(name, tmp_path / "once", 6, checkpoint_every=2, preview_every=1)
    run(name, tmp_path / "twice", 3, checkpoint_every=2, preview_every=2)
    events = run(name, tmp_path / "twice", 6, resume=True, checkpoint_every=5, preview_every=3)
    assert events[0].step == 3 and events[-1].step == 6
    diff = same_files(tmp_path / "once", tmp_path / "twice")
    assert not diff, f"resume differs in {diff[:5]}"
    assert [r["step"] for r in RunFolder(tmp_path / "twice").read_log()] == [1, 2, 3, 4, 5, 6]


def test_resume_keeps_the_augmentation_the_run_started_with(tmp_path, monkeypatch):
    """augment=auto is resolved once and recorded: a later ganhub whose "auto" means something else still
    resumes the run exactly; new runs, and folders from before the record, take the rule of the day."""
    run("dcgan", tmp_path / "once", 4)
    run("dcgan", tmp_path / "twice", 2)
    assert RunFolder(tmp_path / "twice").spec.augment_policy == "color,translation,cutout"  # 64 images: auto is on
    monkeypatch.setattr(augment, "AUTO_POLICY", "translation")
    events = run("dcgan", tmp_path / "twice", 4, resume=True)
    assert "DiffAugment color,translation,cutout" in events[0].message
    assert not same_files(tmp_path / "once", tmp_path / "twice")
    assert "augmentation: DiffAugment (color,translation,cutout)" in write_model_card(tmp_path / "twice").read_text()
    assert "DiffAugment translation" in run("dcgan", tmp_path / "new", 1)[0].message
    assert RunFolder(tmp_path / "new").spec.augment_policy == "translation"
    old = tmp_path / "twice" / "config.json"  # as written before ganhub recorded the policy
    meta = json.loads(old.read_text())
    del meta["recipe"]["augment_policy"]
    old.write_text(json.dumps(meta))
    monkeypatch.setattr(augment, "AUGMENT_AUTO_BELOW", 10)  # and "auto" is now off for 64 images
    assert "DiffAugment" not in run("dcgan", tmp_path / "twice", 5, resume=True)[0].message
    assert RunFolder(tmp_path / "twice").spec.augment_policy == "off"


def test_resume_is_exact_in_bf16(tmp_path):
    events = run("dcgan", tmp_path / "once", 4, precision="bf16")
    assert "bf16" in events[0].message and all(torch.isfinite(torch.tensor(list(e.losses.values()))).all() for e in events)
    run("dcgan", tmp_path / "twice", 2, precision="bf16")
    run("dcgan", tmp_path / "twice", 4, resume=True)
    assert RunFolder(tmp_path / "twice").spec.precision == "bf16"
    assert "--precision bf16" in RunFolder(tmp_path / "twice").meta["recipe"]["command"]
    assert not same_files(tmp_path / "once", tmp_path / "twice")


def test_lr_factor_is_flat_then_linear_to_zero():
    assert [lr_factor(t, 10, 0.5) for t in range(10)] == [1, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2]
    assert [lr_factor(t, 4, 1.0) for t in range(4)] == [1, 0.75, 0.5, 0.25]  # Miyato et al.: the whole run
    assert all(lr_factor(t, 10, 0.0) == 1 for t in range(10))


def _lrs(folder) -> list[float]:
    _, meta = RunFolder(folder).read_checkpoint()
    return [g["lr"] for net in ("G", "D") for g in meta["opts"][net]["param_groups"]]


def test_lr_rampdown_lowers_the_rates_and_a_stopped_run_resumes_exactly(tmp_path):
    """lr_rampdown=0.5 of 6 steps: steps 5 and 6 train at 2/3 and 1/3 of the rate; stop at 3 + resume == one go."""
    sets = {**tiny("dcgan"), "lr_rampdown": 0.5}
    run("dcgan", tmp_path / "once", 6, overrides=sets)
    lr = registry.get("dcgan").config_cls().lr_g
    assert _lrs(tmp_path / "once") == pytest.approx([lr / 3] * 2)  # the rate of the last step (step index 5)
    stop = threading.Event()
    for ev in train("dcgan", dataset="fashion-mnist", steps=6, out=tmp_path / "twice", limit=LIMIT, overrides=sets,
                    precision="fp32", stop=stop, tensorboard=False):
        if ev.kind == "step" and ev.step == 3:
            stop.set()
    assert RunFolder(tmp_path / "twice").step == 3 and _lrs(tmp_path / "twice") == pytest.approx([lr] * 2)
    run("dcgan", tmp_path / "twice", 6, resume=True)
    assert not same_files(tmp_path / "once", tmp_path / "twice")
    run("dcgan", tmp_path / "flat", 6)  # the same run without decay ends elsewhere
    assert same_files(tmp_path / "once", tmp_path / "flat") and _lrs(tmp_path / "flat") == pytest.approx([lr] * 2)


def test_a_flat_run_resumed_with_an_lr_rampdown_is_the_run_its_recorded_command_makes(tmp_path):
    """3 steps at the full rate, resumed to 6 with lr_rampdown=0.5 (which leaves steps 1-3 at 1) == 6 in one
    go; a schedule that would have lowered a step already trained at the full rate, or a run already ramped
    down, is refused before any work."""
    sets = {**tiny("dcgan"), "lr_rampdown": 0.5}
    run("dcgan", tmp_path / "once", 6, overrides=sets)
    run("dcgan", tmp_path / "legs", 3)
    with pytest.raises(ConfigError, match=r"would lower the rate before step 3.*use lr_rampdown <= 0\.5"):
        run("dcgan", tmp_path / "legs", 6, resume=True, overrides={**sets, "lr_rampdown": 0.9})
    run("dcgan", tmp_path / "legs", 6, resume=True, overrides=sets)
    assert same_files(tmp_path / "once", tmp_path / "legs") == []
    recipe = RunFolder(tmp_path / "legs").spec
    assert recipe.config["lr_rampdown"] == 0.5 and recipe.steps == 6
    assert recipe.command("r") == RunFolder(tmp_path / "once").spec.command("r")
    assert "lr_rampdown=0.5" in recipe.command("r")
    with pytest.raises(ConfigError, match="already ramped down.*before step 6"):
        run("dcgan", tmp_path / "legs", 10, resume=True)
    with pytest.raises(ConfigError, match=r"cannot change \['lr_g'\]"):
        run("dcgan", tmp_path / "legs", 10, resume=True, overrides={**sets, "lr_g": 0.0123})


def test_the_lr_rampdown_a_refused_resume_suggests_is_accepted():
    """The suggested bound is rounded down: 1 - 133,333/400,000 = 0.6666675 shown as 0.6667 would be refused."""
    from ganhub.train import _check_schedule

    with pytest.raises(ConfigError, match=r"use lr_rampdown <= ([0-9.]+);") as e:
        _check_schedule(400_000, 0.0, 400_000, 0.9, trained=133_333)
    bound = float(re.search(r"<= ([0-9.]+);", str(e.value)).group(1))
    assert 0.6665 < bound <= 0.6666675
    _check_schedule(400_000, 0.0, 400_000, bound, trained=133_333)  # accepted
    with pytest.raises(ConfigError, match="would lower"):
        _check_schedule(400_000, 0.0, 400_000, bound + 1e-4, trained=133_333)


def test_lr_rampdown_is_refused_beside_a_plugins_own_schedulers(tmp_path):
    v = registry.get("dcgan")

    def with_scheduler(G, D, cfg):
        opt_G, opt_D = torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters())
        return opt_G, opt_D, [torch.optim.lr_scheduler.LambdaLR(opt_G, lambda t: 1.0)]

    mine = dataclasses.replace(v, name="dcgan-sched", make_optimizers=with_scheduler)
    kw = dict(dataset="fashion-mnist", steps=2, limit=LIMIT, precision="fp32", tensorboard=False)
    with pytest.raises(ConfigError, match="its own learning-rate schedulers.*lr_rampdown=0"):
        list(train(mine, out=tmp_path / "r", overrides={**tiny("dcgan"), "lr_rampdown": 0.5}, **kw))
    assert list(train(mine, out=tmp_path / "ok", overrides=tiny("dcgan"), **kw))[-1].kind == "done"


def test_the_command_recorded_after_resume_reproduces_the_run(tmp_path, monkeypatch):
    """Every --set survives a resume; the recorded command, run as is, gives the same bits."""
    sets = {**tiny("dcgan"), "lr_d": 3e-4, "betas": (0.5, 0.9), "label_smoothing": 0.1}
    run("dcgan", tmp_path / "r", 2, overrides=sets)
    run("dcgan", tmp_path / "r", 4, resume=True, overrides=None)
    command = RunFolder(tmp_path / "r").meta["recipe"]["command"]
    for part in ("--steps 4", "--set lr_d=0.0003", "--set betas=0.5,0.9", "--set label_smoothing=0.1", "--limit 64"):
        assert part in command, command
    assert "--resume" not in command and command == RunFolder(tmp_path / "r").spec.command(tmp_path / "r")
    argv = shlex.split(command)
    assert argv[:2] == ["ganhub", "train"]
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    monkeypatch.chdir(tmp_path)
    assert main(argv[1:] + ["--quiet"]) == 0
    assert not same_files(tmp_path / "r", tmp_path / "again")
    assert RunFolder(tmp_path / "again").spec == RunFolder(tmp_path / "r").spec


def test_compute_is_recorded_adds_up_over_resumes_and_reaches_the_card(tmp_path):
    """config.json says what training cost (wall-clock, CPU time, device), summed over every leg of a
    resumed run; the model card and a folder's validation agree with it."""
    from ganhub.device import describe, pick_device
    from ganhub.hub import model_card
    from ganhub.run import describe_compute, validate_meta

    run("dcgan", tmp_path / "r", 3)
    first = RunFolder(tmp_path / "r").meta["compute"]
    assert first["wall_seconds"] > 0 and first["cpu_seconds"] > 0 and first["processes"] == 1
    assert first["device"] == f"{describe(pick_device())} in fp32"  # e.g. "CPU (<model name>, 2 threads) in fp32"
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)  # the second leg runs on other "hardware" (on a CPU): both legs are named
    try:
        second = f"{describe(pick_device())} in fp32"
        run("dcgan", tmp_path / "r", 6, resume=True)
    finally:
        torch.set_num_threads(threads)
    meta = RunFolder(tmp_path / "r").meta
    assert meta["compute"]["wall_seconds"] > first["wall_seconds"] and meta["compute"]["cpu_seconds"] > first["cpu_seconds"]
    assert meta["compute"]["device"] == (first["device"] if second == first["device"] else f"{first['device']}, then {second}")
    assert f"- compute: {describe_compute(meta)}" in str(model_card(tmp_path / "r"))
    assert "wall-clock" in describe_compute(meta) and f"of CPU time on {meta['compute']['device']}" in describe_compute(meta)
    for bad in ({"wall_seconds": -1}, {"wall_seconds": 3, "cpu_seconds": "lots"}, [], {"wall_seconds": 3, "processes": 0}):
        with pytest.raises(FolderError, match="compute"):
            validate_meta({**meta, "compute": bad}, "config.json")


def test_stop_event_keeps_a_checkpoint_and_resume_continues(tmp_path):
    stop = threading.Event()
    seen = []
    for ev in train("dcgan", dataset="fashion-mnist", steps=50, out=tmp_path / "r", limit=LIMIT,
                    overrides=tiny("dcgan"), stop=stop, checkpoint_every=100, tensorboard=False):
        seen.append(ev)
        if ev.kind == "step" and ev.step == 3:
            stop.set()
    assert seen[-1].kind == "done" and seen[-1].step == 3 and "--resume" in seen[-1].message
    assert RunFolder(tmp_path / "r").step == 3 and RunFolder(tmp_path / "r").checkpoint_step() == 3
    events = run("dcgan", tmp_path / "r", 5, resume=True)
    assert events[-1].kind == "done" and events[-1].step == 5


def test_letting_go_of_the_loop_is_a_stop_and_keeps_a_checkpoint(tmp_path):
    """The app's browser tab closing closes the generator: the steps done so far are saved, not lost."""
    events = train("dcgan", dataset="fashion-mnist", steps=50, out=tmp_path / "r", limit=LIMIT,
                   overrides=tiny("dcgan"), checkpoint_every=100, tensorboard=False)
    for ev in events:
        if ev.kind == "step" and ev.step == 3:
            break
    assert not RunFolder(tmp_path / "r").has_checkpoint()
    events.close()
    assert RunFolder(tmp_path / "r").step == 3
    assert not RunFolder(tmp_path / "r").lock_path.exists(), "the lock is released"
    assert run("dcgan", tmp_path / "r", 5, resume=True)[-1].step == 5


def test_resume_refuses_changes_and_existing_folders(tmp_path):
    run("dcgan", tmp_path / "r", 2)
    with pytest.raises(FolderError, match="--resume"):
        run("dcgan", tmp_path / "r", 4)
    with pytest.raises(ConfigError, match=r"cannot change \['g_width'\]"):
        run("dcgan", tmp_path / "r", 4, resume=True, overrides={**tiny("dcgan"), "g_width": 8})
    with pytest.raises(ConfigError, match=r"cannot change \['seed'\]"):
        run("dcgan", tmp_path / "r", 4, resume=True, seed=1)
    with pytest.raises(ConfigError, match=r"cannot change \['dataset'\]"):
        list(train("dcgan", dataset="mnist", steps=4, out=tmp_path / "r", resume=True))
    with pytest.raises(ConfigError, match="holds a 'dcgan' run"):
        run("sngan", tmp_path / "r", 4, resume=True)
    with pytest.raises(FolderError, match="no config.json"):
        run("dcgan", tmp_path / "empty", 4, resume=True)
    assert not (tmp_path / "empty").exists()
    shutil.copytree(weights_dir() / "dcgan", tmp_path / "weights")  # a model without a checkpoint is never overwritten
    before = {p.name: p.read_bytes() for p in (tmp_path / "weights").iterdir()}
    with pytest.raises(FolderError, match="holds a trained model but no checkpoint"):
        train("dcgan", out=tmp_path / "weights", steps=6000, resume=True)
    with pytest.raises(FolderError, match="holds a trained model"):
        run("dcgan", tmp_path / "weights", 2)
    assert {p.name: p.read_bytes() for p in (tmp_path / "weights").iterdir()} == before


def test_divergence_stops_with_a_message_and_keeps_the_last_checkpoint(tmp_path):
    base = registry.get("dcgan")

    def loss(phase, **kw):
        value, logs = base.loss(phase, **kw)
        return (value * float("nan"), logs) if kw["step"] >= 4 else (value, logs)

    broken = dataclasses.replace(base, loss=loss)
    with pytest.raises(TrainingDiverged, match=r"diverged at step 4\b.*checkpoint in .* \(step 4\) is kept") as e:
        list(train(broken, dataset="fashion-mnist", steps=10, out=tmp_path / "r", limit=LIMIT,
                   overrides=tiny("dcgan"), checkpoint_every=2, tensorboard=False))
    assert "\n" not in str(e.value)
    assert RunFolder(tmp_path / "r").step == 4
    G = load_generator(tmp_path / "r").G
    assert torch.isfinite(sample(G, 4, 0)).all()
    with pytest.raises(TrainingDiverged, match="no checkpoint was written yet"):  # before any checkpoint
        list(train(broken, dataset="fashion-mnist", steps=10, out=tmp_path / "r2", limit=LIMIT,
                   overrides=tiny("dcgan"), checkpoint_every=5, tensorboard=False))
    assert not (tmp_path / "r2").exists(), "nothing worth keeping: no half-written folder"


def test_a_crash_mid_save_leaves_the_previous_state_loadable(tmp_path, monkeypatch):
    run("dcgan", tmp_path / "r", 2)
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    import ganhub.run as run_module

    real_replace = run_module.os.replace

    def crash(src, dst):
        if str(dst).endswith("model.safetensors"):  # the checkpoint got through, then the power went out
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(run_module.os, "replace", crash)
    with pytest.raises(FolderError, match="the disk is full") as e:
        run("dcgan", tmp_path / "r", 4, resume=True)
    assert "\n" not in str(e.value) and "are kept" in str(e.value)
    monkeypatch.setattr(run_module.os, "replace", real_replace)
    assert not list((tmp_path / "r").rglob("*.tmp")), "temporary files left behind"
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before
    load_generator(tmp_path / "r")
    assert run("dcgan", tmp_path / "r", 4, resume=True)[-1].step == 4


def test_a_variant_object_that_is_not_installed_writes_a_resumable_folder(tmp_path):
    base = registry.get("dcgan")
    mine = dataclasses.replace(base, name="my-dcgan", summary="an unregistered copy")
    events = list(train(mine, dataset="fashion-mnist", steps=2, out=tmp_path / "r", limit=LIMIT,
                        overrides=tiny("dcgan"), tensorboard=False))
    assert events[-1].kind == "done"
    f = RunFolder(tmp_path / "r")
    assert f.spec.variant == "my-dcgan" and f.meta["plugin"]["package"] == "ganhub-dcgan"
    with pytest.raises(FolderError, match="'my-dcgan', which is not installed"):
        load_generator(tmp_path / "r")
    events = list(train(mine, out=tmp_path / "r", steps=4, resume=True, tensorboard=False))
    assert events[0].step == 2 and events[-1].step == 4 and f.step == 4


def test_optimiser_and_scheduler_state_resume_exactly(tmp_path):
    base = registry.get("dcgan")

    def make_optimizers(G, D, cfg):
        opt_G = torch.optim.RMSprop(G.parameters(), lr=cfg.lr_g)
        opt_D = torch.optim.RMSprop(D.parameters(), lr=cfg.lr_d)
        return opt_G, opt_D, [torch.optim.lr_scheduler.StepLR(opt_G, 2, 0.5), torch.optim.lr_scheduler.StepLR(opt_D, 2, 0.5)]

    v = dataclasses.replace(base, make_optimizers=make_optimizers)
    kw = dict(dataset="fashion-mnist", limit=LIMIT, overrides=tiny("dcgan"), tensorboard=False)
    list(train(v, steps=5, out=tmp_path / "once", **kw))
    list(train(v, steps=3, out=tmp_path / "twice", **kw))
    list(train(v, steps=5, out=tmp_path / "twice", resume=True, tensorboard=False))
    assert not same_files(tmp_path / "once", tmp_path / "twice")
    tensors = load_file(tmp_path / "once" / "checkpoint" / "training.safetensors")
    assert any(k.startswith("opt.") and "square_avg" in k for k in tensors), "RMSprop state is checkpointed"
    _, meta = RunFolder(tmp_path / "once").read_checkpoint()
    assert [s["last_epoch"] for s in meta["opts"]["schedulers"]] == [5, 5]


def test_class_conditional_run_previews_one_row_per_class(tmp_path):
    events = list(train("sngan", dataset="fashion-mnist", steps=2, out=tmp_path / "c", limit=LIMIT,
                        overrides={**tiny("sngan"), "num_classes": 10}, tensorboard=False))
    assert "10 classes" in events[0].message
    grid = [e for e in events if e.kind == "checkpoint"][-1].image
    assert grid.size == (8 * 34 + 2, 10 * 34 + 2)  # 8 columns, one row per class
    G = load_generator(tmp_path / "c").G
    assert G.num_classes == 10 and sample(G, 3, 0, labels=7).shape == (3, 1, 32, 32)
    flat = tmp_path / "flat"  # a flat folder of images: unlabelled
    flat.mkdir()
    for i in range(4):
        Image.new("L", (32, 32), 40 * i).save(flat / f"{i}.png")
    with pytest.raises(DatasetError, match="num_classes=10 needs labelled data"):
        list(train("sngan", dataset=str(flat), steps=2, out=tmp_path / "p", overrides={**tiny("sngan"), "num_classes": 10}))
    assert not (tmp_path / "p").exists()


def test_ema_half_life_counts_global_images():
    """The same half-life in images gives the same average whatever the split over processes."""
    cfg = registry.get("dcgan").make_config(ema_half_life_kimg=0.1, ema_rampup=0.0)
    a, b, target = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    b.load_state_dict(a.state_dict())
    torch.nn.init.constant_(target.weight, 1.0)
    update_ema(a, target, cfg, 256, global_batch=256)  # 1 process of 256
    update_ema(b, target, cfg, 256, global_batch=256)  # 4 processes of 64: the global batch is what counts
    assert torch.equal(a.weight, b.weight)
    c = torch.nn.Linear(1, 1)
    c.load_state_dict(a.state_dict())
    update_ema(c, target, cfg, 256, global_batch=64)
    assert not torch.equal(c.weight, a.weight)


@pytest.mark.parametrize("kw, message", [
    (dict(steps=0), "--steps must be an integer from 1"),
    (dict(steps=2, seed=-1), "--seed must be an integer from 0"),
    (dict(steps=2, limit=0), "--limit must be an integer >= 1"),
    (dict(steps=2, checkpoint_every=0), "--checkpoint-every must be an integer at least 1"),
    (dict(steps=2, preview_every=-3), "--preview-every must be an integer at least 1"),
    (dict(steps=2, precision="fp16"), "--precision must be one of auto, bf16, fp32"),
    (dict(steps=2, overrides={"batch_size": 65536, "resolution": 1024}), r"needs ~\d+\.\d GiB of memory .* has"),
    (dict(steps=2, overrides={"lr_d": float("nan")}), "finite"),
])
def test_bad_input_is_refused_before_any_work(tmp_path, kw, message):
    out = tmp_path / "never"
    with pytest.raises((ConfigError, FolderError), match=message) as e:
        train("dcgan", dataset="fashion-mnist", out=out, **kw)  # raised at the call: nothing built or written
    assert "\n" not in str(e.value)
    assert not out.exists()


def test_data_follows_the_dataset_and_an_empty_out_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="'data' must be one of"):
        train("dcgan", dataset="fashion-mnist", steps=2, out="r", overrides={"data": "video"})
    with pytest.raises(ConfigError, match="follows the dataset: fashion-mnist is image data"):
        train("dcgan", dataset="fashion-mnist", steps=2, out="r", overrides={"data": "points"})
    train("dcgan", dataset="fashion-mnist", steps=2, out="r", overrides={"data": "image"})  # agreeing: accepted
    with pytest.raises(FolderError, match="--out is empty"):
        train("dcgan", dataset="fashion-mnist", steps=2, out="", overrides=tiny("dcgan"))
    assert list(tmp_path.iterdir()) == []


def test_a_damaged_checkpoint_is_refused_on_resume_and_can_be_restarted(tmp_path):
    run("dcgan", tmp_path / "r", 2)
    f = RunFolder(tmp_path / "r")
    f.checkpoint_path.write_bytes(f.checkpoint_path.read_bytes()[:100])
    with pytest.raises(FolderError, match="not a readable checkpoint"):
        run("dcgan", tmp_path / "r", 4, resume=True)
    assert run("dcgan", tmp_path / "r", 2)[-1].step == 2 and f.checkpoint_step() == 2  # restartable, not wedged


def test_memory_estimate_never_blocks_a_plugin_it_cannot_measure():
    base = registry.get("dcgan")
    lazy = dataclasses.replace(base, build=lambda cfg: (torch.nn.LazyLinear(4), torch.nn.LazyLinear(1)))
    assert estimate_memory(lazy, base.make_config(), 100) is None
    need, data = estimate_memory(base, base.make_config(), 1000)
    assert 10 * 2**20 < need < 2**30 and data == 1000 * 32 * 32


def test_out_that_is_a_file_or_unwritable_is_one_line(tmp_path):
    (tmp_path / "file").write_text("precious")
    with pytest.raises(FolderError, match="is a file"):
        train("dcgan", dataset="fashion-mnist", steps=2, out=tmp_path / "file", overrides=tiny("dcgan"))
    with pytest.raises(FolderError, match="is a file"):
        train("dcgan", dataset="fashion-mnist", steps=2, out=tmp_path / "file" / "run", overrides=tiny("dcgan"))
    assert (tmp_path / "file").read_text() == "precious"
    with pytest.raises(FolderError, match="cannot write|read-only"):  # /proc refuses new folders, even to root
        list(train("dcgan", dataset="fashion-mnist", steps=2, out="/proc/ganhub-run", limit=LIMIT, overrides=tiny("dcgan")))


def test_a_run_spec_trains_directly(tmp_path):
    v = registry.get("dcgan")
    spec = RunSpec.create(v, v.make_config(**tiny("dcgan")), dataset="fashion-mnist", steps=2, limit=LIMIT, precision="fp32")
    events = list(train_spec(spec, tmp_path / "s", tensorboard=False))
    assert isinstance(events[-1], Event) and events[-1].step == 2 and "fp32" in events[0].message
    assert RunFolder(tmp_path / "s").spec == dataclasses.replace(spec, augment_policy="color,translation,cutout")
    with pytest.raises(ConfigError, match="for 2 process"):
        list(train_spec(dataclasses.replace(spec, world_size=2), tmp_path / "t"))
    other = RunSpec.create(v, v.make_config(**{**tiny("dcgan"), "lr_d": 3e-4}), dataset="fashion-mnist", steps=4, limit=LIMIT,
                           precision="fp32")
    with pytest.raises(ConfigError, match=r"cannot change \['lr_d'\] when resuming"):
        train_spec(other, tmp_path / "s", resume=True)
    assert list(train_spec(dataclasses.replace(spec, steps=3), tmp_path / "s", resume=True, tensorboard=False))[-1].step == 3


def test_adaptive_augmentation_moves_p_and_a_resumed_run_follows_it_exactly(tmp_path, monkeypatch):
    """p (and the half-counted interval at the stop, step 6 of 4-step intervals) travels in the checkpoint."""
    monkeypatch.setattr(augment, "ADA_KIMG", 0.16)  # tiny batches of 4: p moves by 0.1 per 4-step interval
    kw = dict(overrides={**tiny("dcgan"), "augment_target": 0.05})
    run("dcgan", tmp_path / "once", 12, checkpoint_every=4, **kw)
    run("dcgan", tmp_path / "twice", 6, **kw)
    events = run("dcgan", tmp_path / "twice", 12, resume=True, checkpoint_every=5)
    assert "at adaptive strength" in events[0].message and "target 0.05" in events[0].message
    assert not same_files(tmp_path / "once", tmp_path / "twice")
    p = [r["augment_p"] for r in RunFolder(tmp_path / "once").read_log()]
    assert p == [r["augment_p"] for r in RunFolder(tmp_path / "twice").read_log()]
    assert len(set(p)) > 1 and max(p) > 0, f"p never moved ({p}): the test does not exercise the rule"
    assert all(p[i] == p[i - 1] for i in range(1, 12) if (i + 1) % 4), p  # p[i] is step i + 1's: moves every 4th
    states = [RunFolder(tmp_path / d).read_checkpoint()[1]["augment"] for d in ("once", "twice")]
    assert states[0] == states[1] and states[0]["p"] == pytest.approx(p[-1])  # the log rounds to 5 places
    card = write_model_card(tmp_path / "twice").read_text()
    assert "- augmentation: DiffAugment (color,translation,cutout) on real and generated images before D, at " \
           "adaptive strength (ADA's rule, target 0.05) (augment=auto)" in card


def test_a_folder_from_before_adaptive_augmentation_resumes_at_full_strength(tmp_path):
    """A config.json without augment_target (written before the field) means p fixed at 1, as it trained."""
    kw = dict(overrides={**tiny("dcgan"), "augment_target": 0})
    run("dcgan", tmp_path / "once", 4, **kw)
    run("dcgan", tmp_path / "twice", 2, **kw)
    path = tmp_path / "twice" / "config.json"
    meta = json.loads(path.read_text())
    del meta["config"]["augment_target"]
    path.write_text(json.dumps(meta))
    events = run("dcgan", tmp_path / "twice", 4, resume=True)
    assert "DiffAugment color,translation,cutout" in events[0].message and "adaptive" not in events[0].message
    assert RunFolder(tmp_path / "twice").spec.config["augment_target"] == 0
    assert not same_files(tmp_path / "once", tmp_path / "twice")
    assert "augment_p" not in RunFolder(tmp_path / "twice").read_log()[-1]
    assert "adaptive" not in write_model_card(tmp_path / "twice").read_text()
