import json
import subprocess

import pytest
from PIL import Image

from ganhub import registry
from ganhub.cli import main


def tiny_sets(name):
    return [f"--set={k}={v}" for k, v in registry.get(name).test_config.items()]


def test_train_then_sample_grid_and_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "3", "--out", str(out), "--limit", "64", *tiny_sets("dcgan")]) == 0
    assert main(["sample", str(out), "--n", "16", "--seed", "1", "--out", str(tmp_path / "grid.png")]) == 0
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == (4 * 34 + 2, 4 * 34 + 2)  # 4x4 tiles of 32 px with 2 px padding
    assert main(["sample", str(out), "--n", "5", "--seed", "1", "--out", str(tmp_path / "pngs")]) == 0
    files = sorted((tmp_path / "pngs").iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)] and Image.open(files[0]).size == (32, 32)
    assert main(["sample", str(out), "--n", "16", "--seed", "1", "--out", str(tmp_path / "again.png")]) == 0
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "grid.png").read_bytes()


@pytest.mark.parametrize("argv, message", [
    (["train", "nope", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X"], "unknown variant 'nope'"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--set", "bogus=1"], "unknown config key 'bogus'"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--set", "lr_g=fast"], "expects float"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--set", "lr_g"], "key=value"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--set", "resolution=48"], "power of two"),
    (["train", "dcgan", "--dataset", "no/such/dir", "--steps", "2", "--out", "X"], "unknown dataset"),
    (["train", "dcgan", "--dataset", "ring8", "--steps", "2", "--out", "X"], "only learns image"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "0", "--out", "X"], "at least 1"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "X", "--device", "cuda:7"], "not available"),
    (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "two", "--out", "X"], "invalid int value"),
    (["sample", "no/such/folder/anywhere", "--out", "g.png"], "error: "),
])
def test_bad_input_is_one_line_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:  # argparse errors exit; others return
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: ")


def test_console_script_list_json():
    out = subprocess.run(["ganhub", "list", "--json"], capture_output=True, text=True)
    assert out.returncode == 0
    data = json.loads(out.stdout)
    assert {"vanilla", "dcgan", "wgan-gp", "sngan", "stylegan-lite"} <= {v["name"] for v in data["variants"]}
    assert data["failures"] == []


def test_training_on_toy_points(tmp_path):
    out = tmp_path / "ring"
    assert main(["train", "vanilla", "--dataset", "ring8", "--steps", "3", "--out", str(out), *tiny_sets("vanilla")]) == 0
    assert main(["sample", str(out), "--n", "100", "--out", str(tmp_path / "ring.png")]) == 0
    assert Image.open(tmp_path / "ring.png").size == (320, 320)
