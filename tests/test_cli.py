import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ganhub import registry
from ganhub.cli import main
from ganhub.run import RunFolder


def tiny_sets(name):
    return [f"--set={k}={v}" for k, v in registry.get(name).test_config.items()]


def train_args(name, out, steps=3, *extra):
    return ["train", name, "--dataset", "fashion-mnist", "--steps", str(steps), "--out", str(out), "--limit", "64",
            "--precision", "fp32", "--quiet", *tiny_sets(name), *extra]


def test_train_then_sample_grid_and_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args("dcgan", out)) == 0
    assert main(["sample", str(out), "--n", "16", "--seed", "1", "--out", str(tmp_path / "grid.png")]) == 0
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (4 * 34 + 2, 4 * 34 + 2)  # 4x4 tiles of 32 px with 2 px padding
    assert main(["sample", str(out), "--n", "5", "--seed", "1", "--out", str(tmp_path / "pngs")]) == 0
    files = sorted((tmp_path / "pngs").iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)] and Image.open(files[0]).size == (32, 32)
    assert main(["sample", str(out), "--n", "16", "--seed", "1", "--out", str(tmp_path / "again.png")]) == 0
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "grid.png").read_bytes()


def test_precision_and_sync_bn_are_recorded_and_resume_needs_no_dataset(tmp_path):
    out = tmp_path / "run"
    assert main(train_args("dcgan", out, 1, "--sync-bn")) == 0
    assert main(["train", "dcgan", "--steps", "2", "--out", str(out), "--resume", "--quiet"]) == 0
    assert RunFolder(out).step == 2
    spec = RunFolder(out).spec
    assert spec.precision == "fp32" and spec.sync_bn is True and spec.world_size == 1
    command = RunFolder(out).meta["recipe"]["command"]
    assert "--precision fp32" in command and "--sync-bn" in command and "--resume" not in command


def test_class_conditional_sampling(tmp_path, capsys):
    out = tmp_path / "cond"
    assert main(train_args("sngan", out, 2, "--set", "num_classes=10")) == 0
    assert main(["sample", str(out), "--class", "7", "--n", "4", "--out", str(tmp_path / "seven.png")]) == 0
    assert "of class 7" in capsys.readouterr().out
    assert main(["sample", str(out), "--grid-per-class", "3", "--out", str(tmp_path / "classes.png")]) == 0
    assert Image.open(tmp_path / "classes.png").size == (3 * 34 + 2, 10 * 34 + 2)  # one row per class


@pytest.mark.parametrize("argv, message", [
    (["train", "nope", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X"], "unknown variant 'nope'"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--set", "bogus=1"], "unknown config key 'bogus'"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--set", "lr_g=fast"], "expects float"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--set", "lr_g"], "key=value"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--set", "lr_d=nan"], "finite"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--set", "ema_half_life_kimg=nan"], "finite"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--set", "resolution=48"], "power of two"),
    (["train", "dcgan", "--dataset", "no/such/dir", "--steps", "2", "--out", "X"], "unknown dataset"),
    (["train", "dcgan", "--dataset", "ring8", "--steps", "2", "--out", "X"], "only learns image"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "0", "--out", "X"], "--steps must be an integer from 1"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--limit", "-1"], "--limit must be"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--seed", "-5"], "--seed must be"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--checkpoint-every", "-1"],
     "--checkpoint-every must be"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--precision", "fp16"], "invalid choice"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--set", "batch_size=65536",
      "--set", "resolution=1024"], "GiB of memory"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--device", "cuda:7"], "not available"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "two", "--out", "X"], "invalid int value"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--resume"], "no config.json"),
    (["train", "dcgan", "--steps", "2", "--out", "X"], "a new run needs a dataset (--dataset)"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "afile"], "is a file"),
    (["sample", "no/such/folder/anywhere", "--out", "g.png"], "error: "),
    (["sample", "dcgan", "--class", "3", "--out", "g.png"], "unconditional"),
    (["sample", "dcgan", "--grid-per-class", "3", "--out", "g.png"], "unconditional"),
    (["sample", "dcgan", "--grid-per-class", "3", "--out", "pngs"], "ending in .png"),
    (["sample", "dcgan", "--n", "0", "--out", "g.png"], "error: "),
    (["sample", "dcgan", "--n", "10000000", "--out", "g.png"], "at most"),
    (["sample", "dcgan", "--out", "afile"], "is a file"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("keep me")
    with pytest.raises(SystemExit) as exc:  # argparse errors exit; others return
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and sum(line.startswith("error:") for line in lines) == 1
    assert not (tmp_path / "X").exists() and (tmp_path / "afile").read_text() == "keep me"


def test_console_script_list_json():
    script = Path(sys.executable).parent / "ganhub"  # the console script of this environment
    out = subprocess.run([str(script), "list", "--json"], capture_output=True, text=True)
    assert out.returncode == 0
    data = json.loads(out.stdout)
    assert {"vanilla", "dcgan", "wgan-gp", "sngan", "stylegan-lite"} <= {v["name"] for v in data["variants"]}
    assert data["failures"] == []


def test_training_on_toy_points(tmp_path):
    out = tmp_path / "ring"
    assert main(["train", "vanilla", "--dataset", "ring8", "--steps", "3", "--out", str(out), *tiny_sets("vanilla")]) == 0
    assert main(["sample", str(out), "--n", "100", "--out", str(tmp_path / "ring.png")]) == 0
    assert Image.open(tmp_path / "ring.png").size == (320, 320)
