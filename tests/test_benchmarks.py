"""The benchmark scripts run and report what they measured (tiny settings; the real runs are in README)."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ganhub.cli import main as ganhub

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


TINY = ["--limit", "64", "--fid-n", "50", "--set", "g_width=4", "--set", "d_width=4", "--set", "batch_size=4"]


def test_train_curve_scores_and_keeps_every_checkpoint_and_the_last_step(tmp_path, capsys):
    curve = _script("train_curve")
    assert curve.main(["--steps", "5", "--every", "2", "--out", str(tmp_path / "c"), *TINY]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    points = [json.loads(line) for line in lines[:-1]]
    assert [p["step"] for p in points] == [2, 4, 5]  # every 2 steps, and the run's last
    assert all(p["fid"] > 0 and p["class_kl"] >= 0 for p in points)
    assert points[0]["elapsed_s"] <= points[1]["elapsed_s"] <= points[2]["elapsed_s"]
    kept = [load_file(Path(p["folder"]) / "model.safetensors") for p in points]
    assert all(json.loads((Path(p["folder"]) / "config.json").read_text())["step"] == p["step"] for p in points)
    assert any((kept[0][k] != kept[2][k]).any() for k in kept[0])  # snapshots, not three copies of the end
    best = min(points, key=lambda p: p["fid"])
    assert lines[-1] == f"best FID {best['fid']} at step {best['step']}; last {points[-1]['fid']} at step 5"
    # the evaluations between checkpoints leave the run's RNG stream alone: its recorded command, run
    # plainly, trains the same generator bit for bit
    args = shlex.split(json.loads((tmp_path / "c" / "run" / "config.json").read_text())["recipe"]["command"])[1:]
    args[args.index("--out") + 1] = str(tmp_path / "plain")
    assert ganhub(args) == 0
    plain, curved = (load_file(tmp_path / d / "model.safetensors") for d in ("plain", "c/run"))
    assert sorted(plain) == sorted(curved) and all(torch.equal(plain[k], curved[k]) for k in plain)
    # at constant rates (lr_rampdown 0, as here), a checkpoint taken before the run's end is what the same
    # command with --steps <its step> trains, bit for bit: weights may ship such a checkpoint (test_weights)
    args[args.index("--steps") + 1], args[args.index("--out") + 1] = "2", str(tmp_path / "short")
    assert ganhub(args) == 0
    short, at2 = (load_file(tmp_path / d / "model.safetensors") for d in ("short", "c/at-2"))
    assert sorted(short) == sorted(at2) and all(torch.equal(short[k], at2[k]) for k in short)


def test_train_curve_resume_continues_the_run_and_keeps_the_earlier_points(tmp_path, capsys):
    curve, out = _script("train_curve"), str(tmp_path / "c")
    assert curve.main(["--steps", "4", "--every", "2", "--out", out, *TINY]) == 0
    first = load_file(tmp_path / "c" / "at-4" / "model.safetensors")
    capsys.readouterr()
    assert curve.main(["--steps", "6", "--every", "2", "--out", out, "--resume", "--fid-n", "50"]) == 0
    points = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()[:-1]]
    assert [p["step"] for p in points] == [6]  # only the new leg is scored; no --variant or --set needed
    assert sorted(d.name for d in (tmp_path / "c").glob("at-*")) == ["at-2", "at-4", "at-6"]
    assert all((first[k] == v).all() for k, v in load_file(tmp_path / "c" / "at-4" / "model.safetensors").items())
    meta = json.loads((tmp_path / "c" / "at-6" / "config.json").read_text())
    assert meta["step"] == 6 and meta["variant"] == "dcgan" and meta["config"]["g_width"] == 4
    assert curve.main(["--steps", "6", "--every", "2", "--out", out, "--resume", "--fid-n", "50"]) == 2
    assert "already at step 6" in capsys.readouterr().err
    assert curve.main(["--steps", "8", "--out", out, "--resume", "--set", "g_width=8", "--every", "2"]) == 2
    assert "g_width" in capsys.readouterr().err  # the recorded config is kept, not silently changed


def test_a_curve_checkpoint_ships_as_a_weights_entry(tmp_path, capsys):
    """scripts/ship_checkpoint.sh: the files, the grid training drew, the recorded scores and the card."""
    import shutil
    import subprocess

    curve = _script("train_curve")
    assert curve.main(["--steps", "2", "--every", "2", "--out", str(tmp_path / "c"), *TINY]) == 0
    at = tmp_path / "c" / "at-2"
    repo = tmp_path / "repo"  # the script works in the checkout it lives in: give it a throwaway one
    (repo / "scripts").mkdir(parents=True)
    for name in ("ship_checkpoint.sh", "eval_weights.sh"):
        shutil.copy2(ROOT / "scripts" / name, repo / "scripts" / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHON": sys.executable}
    ship = [str(repo / "scripts" / "ship_checkpoint.sh")]
    r = subprocess.run([*ship, "tiny", str(tmp_path / "c")], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "c has no config.json" in r.stderr  # the curve's folder, not a checkpoint
    assert not (repo / "weights").exists()
    r = subprocess.run([*ship, "tiny", str(at)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    shipped = repo / "weights" / "tiny"
    assert (shipped / "samples.png").read_bytes() == (at / "samples.png").read_bytes()
    assert (shipped / "model.safetensors").read_bytes() == (at / "model.safetensors").read_bytes()
    meta = json.loads((shipped / "config.json").read_text())
    fid = meta["metrics"]["fid"]
    assert fid["value"] > 0 and fid["protocol"]["n_generated"] == 5000
    assert fid["command"].startswith("ganhub eval weights/tiny ") and set(meta["metrics"]) >= {"kid", "precision", "recall", "class_kl"}
    assert f"| {fid['value']:.4g} |" in (shipped / "README.md").read_text()  # the card's score table


def test_train_curve_ada_kimg_sets_the_speed_of_adaptive_augmentation_for_its_run_only(tmp_path, capsys,
                                                                                       monkeypatch):
    import ganhub.augment

    built, init = [], ganhub.augment.AdaptiveAugment.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(ganhub.augment.AdaptiveAugment, "__init__", spy)
    before = ganhub.augment.ADA_KIMG
    curve = _script("train_curve")
    argv = ["--steps", "2", "--every", "2", "--out", str(tmp_path / "c"), "--ada-kimg", "100", *TINY]
    assert curve.main(argv) == 0
    assert [a.kimg for a in built] == [100.0]  # 64 images: auto augments, at adaptive strength
    assert ganhub.augment.ADA_KIMG == before


@pytest.mark.parametrize("args", [["--steps", "4", "--every", "5"], ["--steps", "0"], ["--fid-n", "1"],
                                  ["--ada-kimg", "0"]])
def test_train_curve_refuses_bad_arguments_before_training(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as e:
        _script("train_curve").main([*args, "--out", str(tmp_path / "c")])
    assert e.value.code == 2 and "--" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_speed_sample_times_stylegan_lite_in_both_layouts_and_restores_the_switch(capsys):
    import argparse

    speed = _script("speed")
    rows = dict(speed.bench_sample(argparse.Namespace(experiments=True, sample_runs=1)))
    assert {"stylegan-lite (channels_last)", "stylegan-lite (NCHW)", "dcgan"} <= set(rows)
    assert all(ms > 0 for ms in rows.values())
    assert sys.modules["ganhub_stylegan_lite"].CHANNELS_LAST is True
    assert "stylegan-lite (NCHW)" in capsys.readouterr().out
