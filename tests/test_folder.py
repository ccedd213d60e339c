import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from ganhub import registry
from ganhub.errors import FolderError
from ganhub.run import save_generator
from ganhub.sample import sample
from ganhub.source import bundled, load_generator
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


def test_round_trip_is_exact(folder):
    meta = json.loads((folder / "config.json").read_text())
    assert meta["variant"] == "sngan" and meta["plugin"] == {"package": "ganhub-sngan", "version": "0.1.0"}
    assert meta["config"]["g_width"] == 4 and meta["ganhub_format"] == 1
    a, b = load_generator(folder), load_generator(folder)
    assert torch.equal(sample(a.G, 4, 1), sample(b.G, 4, 1)) and not a.G.training


def test_bundled_weights_load_by_name():
    assert "dcgan" in bundled()
    loaded = load_generator("dcgan")
    assert loaded.path.name == "dcgan" and sample(loaded.G, 2, 0).shape == (2, 1, 32, 32)


def test_missing_plugin_names_the_package(folder):
    meta = json.loads((folder / "config.json").read_text())
    meta.update(variant="bigbigan", plugin={"package": "ganhub-bigbigan", "version": "1.0"})
    (folder / "config.json").write_text(json.dumps(meta))
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


def test_config_mismatch_and_corruption_are_clear(folder):
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["g_width"] = 8
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(FolderError, match="does not match its config"):
        load_generator(folder)
    meta["config"]["surprise"] = 1
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(FolderError, match="unknown config key 'surprise'"):
        load_generator(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(FolderError, match="not valid JSON"):
        load_generator(folder)


def test_pickles_are_never_read(folder):
    (folder / "model.safetensors").write_bytes(b"\x80\x04\x95 a pickle, not safetensors")
    with pytest.raises(FolderError, match="not a readable safetensors file"):
        load_generator(folder)
