"""Hostile and faulty inputs (issue 12, part 8): each case must end with exit code 2 and exactly one
`error:` line on stderr, no traceback, nothing written outside the run folder or temp dirs, and any
previous run folder byte-identical and still loadable.

Cases run the CLI in-process (`ganhub.cli.main`), a few in a subprocess. Placeholders in argv:
RUN = a copy of a valid run folder (must stay as it was), NEW = a fresh path for a new run folder,
FILE = an existing regular file, CWD = the working directory (a sandbox), TOK = the fake Hub's token.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import traceback
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from ganhub import registry
from ganhub.cli import main
from ganhub.run import save_generator
from ganhub.source import load_generator, weights_dir
from ganhub.testing import tiny_config
from ganhub.variant import build_models

# ---------------------------------------------------------------------------------------------------------
# Harness


def tiny_sets(name: str = "dcgan") -> list[str]:
    return [f"--set={k}={v}" for k, v in registry.get(name).test_config.items()]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A valid run folder (dcgan, tiny config), copied fresh into every case as RUN."""
    v = registry.get("dcgan")
    cfg = tiny_config(v)
    torch.manual_seed(0)
    G, _ = build_models(v, cfg)
    out = tmp_path_factory.mktemp("template") / "run"
    save_generator(out, G, variant=v, cfg=cfg, step=3,
                   recipe={"dataset": "fashion-mnist", "steps": 3, "seed": 0, "batch_size": 4})
    return out


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in root.rglob("*"):
        if "hf-home" in p.parts:  # the fake Hub's cache: a temp dir huggingface_hub may fill
            continue
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


class Sandbox:
    def __init__(self, root: Path, template: Path):
        self.root = root
        self.cwd = root / "cwd"
        self.cwd.mkdir()
        self.run = root / "run"
        shutil.copytree(template, self.run)
        self.new = root / "new-run"
        self.file = root / "a-file"
        self.file.write_text("just a file\n")
        (self.cwd / "dir.png").mkdir()  # a directory whose name looks like a grid file
        self.token = ""
        self.trained: Path | None = None  # a copy of a real (resumable) run, when a case asks for TRAINED

    def expand(self, argv: list) -> list[str]:
        subs = {"TRAINED": str(self.trained), "RUN": str(self.run), "NEW": str(self.new), "FILE": str(self.file), "CWD": str(self.cwd), "TOK": self.token}
        out = []
        for a in argv:
            a = str(a)
            for k, v in subs.items():
                a = a.replace(k, v)
            out.append(a)
        return out


@pytest.fixture
def box(tmp_path, template, monkeypatch) -> Sandbox:
    sb = Sandbox(tmp_path, template)
    monkeypatch.chdir(sb.cwd)
    return sb


WEIGHTS = weights_dir()


def weights_state() -> dict[str, tuple[int, int]]:
    return tree_state(WEIGHTS) if WEIGHTS.is_dir() else {}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage errors
        code = e.code
    except BaseException as e:  # anything else escaping main() is a traceback for the user
        out, err = capsys.readouterr()
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        pytest.fail(f"uncaught {type(e).__name__} escaped ganhub.cli.main:\n{tb[-2500:]}\nstderr: {err[-800:]}")
    out, err = capsys.readouterr()
    return code, out, err


def check_case(box: Sandbox, argv: list, capsys, must: str | None = None) -> str:
    before_box, before_weights = tree_state(box.root), weights_state()
    kept = [box.run] + ([box.trained] if box.trained else [])
    kept_before = [files(k) for k in kept]
    code, out, err = run_cli(box.expand(argv), capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, (
        f"exit {code}, {len(errors)} error lines\nstdout: {out[-800:]}\nstderr: {err[-1500:]}")
    if must:
        assert re.search(must, errors[0], re.I), f"expected /{must}/ in: {errors[0]}"
    after_box = tree_state(box.root)
    written = sorted(k for k in after_box if before_box.get(k) != after_box[k])
    assert not written, f"a refused command wrote files: {written[:8]} ({errors[0]})"
    assert weights_state() == before_weights, "the bundled weights/ changed"
    for k, before in zip(kept, kept_before):
        assert files(k) == before, f"the existing run folder {k.name} changed"
        load_generator(k)  # the previous state is still loadable
    return errors[0]


# ---------------------------------------------------------------------------------------------------------
# 1. Config values (--set) and 2. counts, seeds, truncation, intervals

TRAIN = ["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", "NEW", "--limit", "64"]

CONFIG_CASES = {
    "lr_d=nan": ["--set", "lr_d=nan"],
    "lr_d=-1": ["--set", "lr_d=-1"],
    "lr_g=inf": ["--set", "lr_g=inf"],
    "z_dim=0": ["--set", "z_dim=0"],
    "z_dim=huge-int": ["--set", "z_dim=99999999999999999999999"],
    "betas=nan": ["--set", "betas=nan,0.999"],
    "betas-one-value": ["--set", "betas=0.5"],
    "betas=1,1": ["--set", "betas=1.0,1.0"],
    "ema=nan": ["--set", "ema_half_life_kimg=nan"],
    "ema=-1": ["--set", "ema_half_life_kimg=-1"],
    "batch_size=0": ["--set", "batch_size=0"],
    "batch_size=float": ["--set", "batch_size=2.5"],
    "resolution=7": ["--set", "resolution=7"],
    "channels=2": ["--set", "channels=2"],
    "n_critic=-3": ["--set", "n_critic=-3"],
    "num_classes=-1": ["--set", "num_classes=-1"],
    "data=video": ["--set", "data=video"],
    "augment=sideways": ["--set", "augment=sideways"],
    "unknown-key": ["--set", "flux_capacitor=1"],
    "no-equals": ["--set", "lr_d"],
    "empty-key": ["--set", "=3"],
    "too-big-for-memory": ["--set", "resolution=1024", "--set", "channels=3", "--set", "batch_size=65536"],
}


@pytest.mark.parametrize("extra", CONFIG_CASES.values(), ids=CONFIG_CASES.keys())
def test_config_values(box, capsys, extra):
    check_case(box, TRAIN + tiny_sets() + extra, capsys)


COUNT_CASES = {
    "train-steps=0": (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "0", "--out", "NEW"], None),
    "train-steps=-5": (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "-5", "--out", "NEW"], None),
    "train-steps=two": (["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "two", "--out", "NEW"], None),
    "train-limit=-1": (TRAIN[:-2] + ["--limit", "-1"], None),
    "train-limit=0": (TRAIN[:-2] + ["--limit", "0"], None),
    "train-checkpoint-every=-1": (TRAIN + ["--checkpoint-every", "-1"], None),
    "train-preview-every=0": (TRAIN + ["--preview-every", "0"], None),
    "train-batch-size=0": (TRAIN + ["--batch-size", "0"], None),
    "train-seed=2**70": (TRAIN + ["--seed", str(2**70)], None),
    "sample-n=0": (["sample", "RUN", "--n", "0", "--out", "CWD/g.png"], None),
    "sample-n=-3": (["sample", "RUN", "--n", "-3", "--out", "CWD/g.png"], None),
    "sample-n=10M-grid": (["sample", "RUN", "--n", "10000000", "--out", "CWD/g.png"], "1024"),
    "sample-truncation=nan": (["sample", "RUN", "--truncation", "nan", "--out", "CWD/g.png"], "truncation"),
    "sample-truncation=inf": (["sample", "RUN", "--truncation", "inf", "--out", "CWD/g.png"], "truncation"),
    "sample-truncation-no-mapping": (["sample", "RUN", "--truncation", "0.7", "--out", "CWD/g.png"], "mapping"),
    "sample-seed=2**70": (["sample", "RUN", "--seed", str(2**70), "--out", "CWD/g.png"], "seed"),
    "sample-seed=-1": (["sample", "RUN", "--seed", "-1", "--out", "CWD/g.png"], "seed"),
    "eval-n=0": (["eval", "RUN", "--n", "0"], None),
    "eval-n=-10": (["eval", "RUN", "--n", "-10"], None),
    "eval-truncation=nan": (["eval", "RUN", "--truncation", "nan", "--n", "100"], None),
    "eval-batch-size=0": (["eval", "RUN", "--batch-size", "0", "--n", "100"], None),
    "eval-unknown-metric": (["eval", "RUN", "--metrics", "fid,vibes", "--n", "100"], None),
}


@pytest.mark.parametrize("argv, must", COUNT_CASES.values(), ids=COUNT_CASES.keys())
def test_counts_seeds_truncation_intervals(box, capsys, argv, must):
    check_case(box, argv, capsys, must)


# ---------------------------------------------------------------------------------------------------------
# 3. Malformed config.json (local; pulled ones in section 6) and 4. corrupt or mismatched weights


def _meta(box: Sandbox) -> dict:
    return json.loads((box.run / "config.json").read_text())


CONFIG_JSON = {
    "a-list": lambda m: [m],
    "null": lambda m: None,
    "config-null": lambda m: {**m, "config": None},
    "config-list": lambda m: {**m, "config": [1, 2]},
    "variant-list": lambda m: {**m, "variant": ["dcgan"]},
    "variant-missing": lambda m: {k: v for k, v in m.items() if k != "variant"},
    "config-missing": lambda m: {k: v for k, v in m.items() if k != "config"},
    "variant-unknown": lambda m: {**m, "variant": "no-such-variant"},
    "z_dim-string": lambda m: {**m, "config": {**m["config"], "z_dim": "abc"}},
    "z_dim-negative": lambda m: {**m, "config": {**m["config"], "z_dim": -4}},
    "resolution-float": lambda m: {**m, "config": {**m["config"], "resolution": 31.5}},
    "plugin-string": lambda m: {**m, "plugin": "ganhub-dcgan"},
    "step-string": lambda m: {**m, "step": "seven"},
    "recipe-list": lambda m: {**m, "recipe": ["x"]},
    "metrics-list": lambda m: {**m, "metrics": [1]},
}


@pytest.mark.parametrize("mutate", CONFIG_JSON.values(), ids=CONFIG_JSON.keys())
def test_malformed_config_json(box, capsys, mutate):
    bad = box.root / "bad"
    shutil.copytree(box.run, bad)
    (bad / "config.json").write_text(json.dumps(mutate(_meta(box))))
    check_case(box, ["sample", str(bad), "--n", "4", "--out", "CWD/g.png"], capsys)


RAW_CONFIG = {
    "not-json": b'{"variant": "dcgan", "config": {',
    "empty": b"",
    "binary": bytes(range(256)) * 4,
    "deep-nesting": b"[" * 200_000 + b"]" * 200_000,
    "huge-number": b'{"variant": "dcgan", "config": {"z_dim": 1e999999}}',
}


@pytest.mark.parametrize("data", RAW_CONFIG.values(), ids=RAW_CONFIG.keys())
def test_unparseable_config_json(box, capsys, data):
    bad = box.root / "bad"
    shutil.copytree(box.run, bad)
    (bad / "config.json").write_bytes(data)
    check_case(box, ["sample", str(bad), "--n", "4", "--out", "CWD/g.png"], capsys)


def _weights(box: Sandbox, kind: str) -> bytes:
    good = (box.run / "model.safetensors").read_bytes()
    if kind == "empty":
        return b""
    if kind == "garbage":
        return os.urandom(4096)
    if kind == "huge-header-length":
        return (2**62).to_bytes(8, "little") + b"{}"
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "wrong-shapes":
        v = registry.get("dcgan")
        G, _ = build_models(v, v.make_config(**{**dict(v.test_config), "z_dim": 16}))
        return st_save({k: t.contiguous() for k, t in G.state_dict().items()})
    if kind == "missing-keys":
        return st_save({"unrelated": torch.zeros(3)})
    if kind == "nan-header":
        return len(b'{"x": NaN}').to_bytes(8, "little") + b'{"x": NaN}'
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["empty", "garbage", "huge-header-length", "truncated", "wrong-shapes",
                                  "missing-keys", "nan-header"])
def test_corrupt_or_mismatched_weights(box, capsys, kind):
    bad = box.root / "bad"
    shutil.copytree(box.run, bad)
    (bad / "model.safetensors").write_bytes(_weights(box, kind))
    check_case(box, ["sample", str(bad), "--n", "4", "--out", "CWD/g.png"], capsys)


def test_weights_file_is_a_directory(box, capsys):
    bad = box.root / "bad"
    shutil.copytree(box.run, bad)
    (bad / "model.safetensors").unlink()
    (bad / "model.safetensors").mkdir()
    check_case(box, ["sample", str(bad), "--n", "4", "--out", "CWD/g.png"], capsys)


# ---------------------------------------------------------------------------------------------------------
# 5. Output paths (tests run as root: chmod stops nothing, so use paths under a regular file and /proc)

OUT_CASES = {
    "sample-grid-under-a-file": ["sample", "RUN", "--n", "4", "--out", "FILE/g.png"],
    "sample-dir-under-a-file": ["sample", "RUN", "--n", "4", "--out", "FILE/pngs"],
    "sample-dir-is-a-file": ["sample", "RUN", "--n", "4", "--out", "FILE"],
    "sample-grid-is-a-dir": ["sample", "RUN", "--n", "4", "--out", "CWD/dir.png"],
    "sample-into-proc": ["sample", "RUN", "--n", "4", "--out", "/proc/ganhub-hostile/g.png"],
    "sample-dir-into-proc": ["sample", "RUN", "--n", "4", "--out", "/proc/ganhub-hostile"],
    "train-out-is-a-file": TRAIN[:-4] + ["--out", "FILE", "--limit", "64"],
    "train-out-under-a-file": TRAIN[:-4] + ["--out", "FILE/run", "--limit", "64"],
    "train-out-in-proc": TRAIN[:-4] + ["--out", "/proc/ganhub-hostile", "--limit", "64"],
    "train-into-an-existing-run": TRAIN[:-4] + ["--out", "RUN", "--limit", "64"],
}


@pytest.mark.parametrize("argv", OUT_CASES.values(), ids=OUT_CASES.keys())
def test_output_paths(box, capsys, argv):
    if argv[0] == "train":
        argv = argv + tiny_sets()
    check_case(box, argv, capsys)


# ---------------------------------------------------------------------------------------------------------
# 6. Hub ids, revisions, missing repos, pushes of bad folders, pulled configs

HUB_CASES = {
    "pull-../../x": (["pull", "../../x"], "not a valid"),
    "pull-a/b/c": (["pull", "a/b/c"], "not a valid"),
    "pull-..": (["pull", ".."], "not a valid"),
    "pull-empty": (["pull", ""], "not a valid"),
    "pull-../etc": (["pull", "../etc"], "not a valid"),
    "pull-revision-escape": (["pull", "tester/x", "--revision", "../../../x"], "not a valid revision"),
    "pull-revision-absolute": (["pull", "tester/x", "--revision", "/etc/passwd"], "not a valid revision"),
    "pull-revision-backslash": (["pull", "tester/x", "--revision", "..\\..\\x"], "not a valid revision"),
    "pull-missing-repo": (["pull", "tester/not-there"], "not found"),
    "push-invalid-id": (["push", "RUN", "../x", "--token", "TOK"], "not a valid"),
    "push-revision-escape": (["push", "RUN", "tester/x", "--token", "TOK", "--revision", "../x"], "not a valid revision"),
    "push-folder-without-model": (["push", "NOMODEL", "tester/x", "--token", "TOK"], "model.safetensors"),
    "push-not-a-run-folder": (["push", "CWD", "tester/x", "--token", "TOK"], None),
    "sample-source-../etc": (["sample", "../etc", "--out", "CWD/g.png"], None),
    "sample-source-revision-escape": (["sample", "tester/x@../../x", "--out", "CWD/g.png"], None),
}


@pytest.mark.parametrize("argv, must", HUB_CASES.values(), ids=HUB_CASES.keys())
def test_hub_ids_revisions_and_repos(box, capsys, fake_hub, argv, must):
    box.token = fake_hub.token
    nomodel = box.root / "nomodel"
    shutil.copytree(box.run, nomodel)
    (nomodel / "model.safetensors").unlink()
    argv = [a.replace("NOMODEL", str(nomodel)) for a in argv]
    line = check_case(box, argv, capsys, must)
    assert "network" not in line, line
    assert fake_hub.token not in line


@pytest.mark.parametrize("mutate", ["a-list", "config-null", "variant-list"])
def test_pulled_config_json_is_validated(box, capsys, fake_hub, mutate):
    box.token = fake_hub.token
    assert main(["push", str(box.run), "tester/pulled", "--token", fake_hub.token]) == 0
    capsys.readouterr()
    fake_hub.repos["tester/pulled"].branches["main"]["config.json"] = json.dumps(CONFIG_JSON[mutate](_meta(box))).encode()
    check_case(box, ["sample", "tester/pulled", "--n", "4", "--out", "CWD/g.png"], capsys)


# ---------------------------------------------------------------------------------------------------------
# 7. Plugins that fail (fake distributions on sys.path)

HOSTILE_PLUGINS = {
    "hostile_exit": "import sys\nsys.exit(3)\n",
    "hostile_kbint": "raise KeyboardInterrupt\n",
    "hostile_shape": '''
        from dataclasses import dataclass
        import torch
        from torch import nn
        from ganhub.variant import BaseConfig, Variant

        @dataclass
        class Config(BaseConfig):
            pass

        class G(nn.Module):
            def __init__(self, cfg):
                super().__init__()
                self.lin = nn.Linear(cfg.z_dim, 16)
            def forward(self, z, c=None):
                return torch.tanh(self.lin(z)).view(-1, 1, 4, 4)  # wrong: the config says 32 x 32

        def build(cfg):
            return G(cfg), nn.Sequential(nn.Flatten(), nn.Linear(cfg.channels * cfg.resolution ** 2, 1), nn.Flatten(0))

        def loss(phase, *, D, real, fake, **_):
            l = (D(fake).mean() - D(real).mean()) if phase == "D" else -D(fake).mean()
            return l, {"loss": l.item()}

        variant = Variant(name="wrong-shape", summary="G returns the wrong shape", config_cls=Config, build=build,
                          loss=loss, test_config={"batch_size": 2, "z_dim": 4})
    ''',
    "hostile_logs": '''
        from dataclasses import dataclass
        import torch
        from torch import nn
        from ganhub.variant import BaseConfig, Variant

        @dataclass
        class Config(BaseConfig):
            pass

        class G(nn.Module):
            def __init__(self, cfg):
                super().__init__()
                self.shape = (cfg.channels, cfg.resolution, cfg.resolution)
                self.lin = nn.Linear(cfg.z_dim, cfg.channels * cfg.resolution ** 2)
            def forward(self, z, c=None):
                return torch.tanh(self.lin(z)).view(-1, *self.shape)

        def build(cfg):
            return G(cfg), nn.Sequential(nn.Flatten(), nn.Linear(cfg.channels * cfg.resolution ** 2, 1), nn.Flatten(0))

        def loss(phase, *, D, real, fake, **_):
            l = (D(fake).mean() - D(real).mean()) if phase == "D" else -D(fake).mean()
            return l, {"loss": "not a float", "tensor": l}

        variant = Variant(name="bad-logs", summary="logs strings and tensors", config_cls=Config, build=build,
                          loss=loss, test_config={"batch_size": 2, "z_dim": 4})
    ''',
    "hostile_lazy": '''
        from dataclasses import dataclass
        import torch
        from torch import nn
        from ganhub.variant import BaseConfig, Variant

        @dataclass
        class Config(BaseConfig):
            pass

        class G(nn.Module):
            def __init__(self, cfg):
                super().__init__()
                self.shape = (cfg.channels, cfg.resolution, cfg.resolution)
                self.lin = nn.LazyLinear(cfg.channels * cfg.resolution ** 2)
            def forward(self, z, c=None):
                raise RuntimeError("simulated plugin bug in forward")

        def build(cfg):
            return G(cfg), nn.Sequential(nn.Flatten(), nn.LazyLinear(1), nn.Flatten(0))

        def loss(phase, *, D, real, fake, **_):
            l = D(fake).mean()
            return l, {"loss": l.item()}

        variant = Variant(name="lazy", summary="lazy modules and a G that raises", config_cls=Config, build=build,
                          loss=loss, test_config={"batch_size": 2, "z_dim": 4})
    ''',
}


@pytest.fixture
def hostile_site(tmp_path_factory):
    from tests.plugin_fixture import make_fake_distribution

    root = make_fake_distribution(tmp_path_factory.mktemp("site"), broken=True, extra=True)
    for mod, src in HOSTILE_PLUGINS.items():
        (root / f"{mod}.py").write_text(textwrap.dedent(src))
    info = root / "hostileplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hostileplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[ganhub.variants]\nexits = hostile_exit:variant\nkbint = hostile_kbint:variant\n"
        "wrong-shape = hostile_shape:variant\nbad-logs = hostile_logs:variant\nlazy = hostile_lazy:variant\n")
    # keep the fixture's API-mismatch plugin but not its duplicate "dcgan" (it would disable the real one,
    # which the RUN folder of every case needs)
    eps = root / "fakeplug-0.3.dist-info" / "entry_points.txt"
    eps.write_text("".join(line for line in eps.read_text().splitlines(True) if not line.startswith("dcgan ")))
    def clean():
        sys.path.remove(str(root))
        for mod in [m for m in sys.modules if m.startswith(("fakeplug_", "hostile_"))]:
            del sys.modules[mod]
        importlib.invalidate_caches()
        registry.reload()

    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        registry.reload()
    except BaseException as e:  # an escape here would end the whole pytest session: report it as a failure
        clean()
        pytest.fail(f"registry.reload() let {type(e).__name__} escape from a plugin's import")
    yield root
    clean()


PLUGIN_CASES = {
    "failed-import": (["train", "broken-one", "--dataset", "fashion-mnist", "--steps", "1", "--out", "NEW"], "simulated"),
    "api-mismatch": (["train", "future", "--dataset", "fashion-mnist", "--steps", "1", "--out", "NEW"], "99"),
    "sys-exit-at-import": (["train", "exits", "--dataset", "fashion-mnist", "--steps", "1", "--out", "NEW"], "exit"),
    "keyboardinterrupt-at-import": (["train", "kbint", "--dataset", "fashion-mnist", "--steps", "1", "--out", "NEW"], None),
    "g-wrong-shape": (["train", "wrong-shape", "--dataset", "fashion-mnist", "--steps", "1", "--out", "NEW", "--limit", "8",
                       "--set", "batch_size=2", "--set", "z_dim=4"], "wrong-shape"),
    "loss-logs-non-floats": (["train", "bad-logs", "--dataset", "fashion-mnist", "--steps", "1", "--out", "NEW", "--limit", "8",
                              "--set", "batch_size=2", "--set", "z_dim=4"], "bad-logs"),
    "lazy-modules": (["train", "lazy", "--dataset", "fashion-mnist", "--steps", "1", "--out", "NEW", "--limit", "8",
                      "--set", "batch_size=2", "--set", "z_dim=4", "--set", "resolution=8"], None),
    "unknown-variant": (["train", "no-such-gan", "--dataset", "fashion-mnist", "--steps", "1", "--out", "NEW"], "no-such-gan"),
}


@pytest.mark.parametrize("argv, must", PLUGIN_CASES.values(), ids=PLUGIN_CASES.keys())
def test_plugin_failures(box, capsys, hostile_site, argv, must):
    check_case(box, argv, capsys, must)


def test_list_survives_every_hostile_plugin(capsys, hostile_site):
    code, out, err = run_cli(["list"], capsys)
    assert code == 0 and "Traceback" not in err
    for name in ("broken-one", "future", "exits", "kbint"):
        assert re.search(rf"FAILED {name}\b", out), out


def test_sample_of_a_run_whose_plugin_failed_says_why(box, capsys, hostile_site):
    meta = _meta(box)
    bad = box.root / "bad"
    shutil.copytree(box.run, bad)
    (bad / "config.json").write_text(json.dumps({**meta, "variant": "broken-one"}))
    check_case(box, ["sample", str(bad), "--n", "2", "--out", "CWD/g.png"], capsys, "simulated")


# ---------------------------------------------------------------------------------------------------------
# 8. Datasets: hostile archives and folders


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buf, format="PNG")
    return buf.getvalue()


def _dataset(box: Sandbox, kind: str) -> Path:
    p = box.root / "data"
    if kind == "zip-path-traversal":
        p = p.with_suffix(".zip")
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("../../../../evil-escape.png", _png())
            z.writestr("/abs-escape.png", _png())
    elif kind == "zip-bomb":
        p = p.with_suffix(".zip")
        with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z, z.open("bomb.png", "w", force_zip64=True) as f:
            block = b"\0" * 2**20
            for _ in range(300):  # 300 MB of zeros, ~300 KB compressed
                f.write(block)
    elif kind == "zip-corrupt-images":
        p = p.with_suffix(".zip")
        with zipfile.ZipFile(p, "w") as z:
            for i in range(5):
                z.writestr(f"img{i}.png", b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    elif kind == "not-a-zip":
        p = p.with_suffix(".zip")
        p.write_bytes(os.urandom(1000))
    elif kind == "empty-zip":
        p = p.with_suffix(".zip")
        zipfile.ZipFile(p, "w").close()
    elif kind == "empty-folder":
        p.mkdir()
    elif kind == "folder-of-symlinks":
        p.mkdir()
        (p / "passwd.png").symlink_to("/etc/passwd")
        (p / "loop.png").symlink_to(p / "loop.png")
    elif kind == "zero-byte-images":
        p.mkdir()
        for i in range(4):
            (p / f"{i}.png").write_bytes(b"")
    elif kind == "unknown-name":
        return Path("imagenet-9000")
    else:
        raise AssertionError(kind)
    return p


DATA_KINDS = ["zip-path-traversal", "zip-bomb", "zip-corrupt-images", "not-a-zip", "empty-zip", "empty-folder",
              "folder-of-symlinks", "zero-byte-images", "unknown-name"]


@pytest.mark.parametrize("kind", DATA_KINDS)
def test_hostile_datasets(box, capsys, kind):
    data = _dataset(box, kind)
    check_case(box, ["train", "dcgan", "--dataset", str(data), "--steps", "1", "--out", "NEW", *tiny_sets()], capsys)
    assert not list(box.root.parent.rglob("*escape.png")) and not Path("/abs-escape.png").exists()


# ---------------------------------------------------------------------------------------------------------
# A few through a real process: the console entry point, exit status and stderr as a user sees them

SUBPROCESS_CASES = {
    "pull-traversal": ["pull", "../../x"],
    "sample-n=0": ["sample", "RUN", "--n", "0", "--out", "g.png"],
    "sample-grid-under-a-file": ["sample", "RUN", "--n", "4", "--out", "FILE/g.png"],
    "train-lr=nan": TRAIN + ["--set", "lr_d=nan"],
    "bad-config-json": ["sample", "BAD", "--out", "g.png"],
}


@pytest.mark.parametrize("argv", SUBPROCESS_CASES.values(), ids=SUBPROCESS_CASES.keys())
def test_in_a_subprocess(box, argv):
    bad = box.root / "bad"
    shutil.copytree(box.run, bad)
    (bad / "config.json").write_text("null")
    argv = [a.replace("BAD", str(bad)) for a in box.expand(argv)]
    before = tree_state(box.root)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(box.root / "hf-home")}
    p = subprocess.run([sys.executable, "-m", "ganhub.cli", *argv], cwd=box.cwd, env=env, capture_output=True,
                       text=True, timeout=240)
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert p.returncode == 2 and len(errors) == 1 and "Traceback" not in p.stderr, p.stderr[-1500:]
    after = tree_state(box.root)
    assert not [k for k in after if before.get(k) != after[k]]


# ---------------------------------------------------------------------------------------------------------
# 9. Resuming and restarting real runs, devices, hostile weight files, labels that do not fit the data


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real 2-step run with a checkpoint (resumable)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    code = main(["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "2", "--out", str(out), "--limit", "16",
                 "--quiet", *tiny_sets()])
    assert code == 0 and (out / "model.safetensors").is_file()
    return out


RESUME = ["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "4", "--out", "TRAINED", "--limit", "16", "--resume"]
LIFECYCLE_CASES = {
    "resume-lr=nan": RESUME + ["--set", "lr_d=nan"],
    "resume-as-another-variant": ["train", "sngan", "--dataset", "fashion-mnist", "--steps", "4", "--out", "TRAINED",
                                  "--limit", "16", "--resume"],
    "resume-corrupt-checkpoint": RESUME + ["CORRUPT"],
    "resume-checkpoint-is-a-dir": RESUME + ["CKPTDIR"],
    "resume-without-checkpoint": ["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "4", "--out", "RUN",
                                  "--limit", "16", "--resume"],
    "resume-nothing-there": ["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "4", "--out", "NEW", "--resume"],
    "restart-over-a-trained-run": ["train", "dcgan", "--dataset", "fashion-mnist", "--steps", "4", "--out", "TRAINED",
                                   "--limit", "16"],
}


@pytest.mark.parametrize("argv", LIFECYCLE_CASES.values(), ids=LIFECYCLE_CASES.keys())
def test_resume_and_restart(box, capsys, trained, argv):
    box.trained = box.root / "trained"
    shutil.copytree(trained, box.trained)
    if "CORRUPT" in argv or "CKPTDIR" in argv:
        ckpt = next(p for p in box.trained.rglob("*.safetensors") if "checkpoint" in p.parts)
        if "CORRUPT" in argv:
            ckpt.write_bytes(ckpt.read_bytes()[:100])
        else:
            ckpt.unlink()
            ckpt.mkdir()
        argv = [a for a in argv if a not in ("CORRUPT", "CKPTDIR")]
    check_case(box, argv + tiny_sets(), capsys)


def _evil_pickle(box: Sandbox) -> Path:
    import pickle

    marker = box.root / "PWNED"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = box.cwd / "evil.pth"
    path.write_bytes(pickle.dumps({"state_dict": Evil()}))
    return path


def _flat_folder(box: Sandbox) -> Path:
    d = box.root / "flat"
    d.mkdir()
    for i in range(8):
        (d / f"{i}.png").write_bytes(_png())
    return d


MISC_CASES = {
    "sample-device-cuda:7": ["sample", "RUN", "--n", "2", "--out", "CWD/g.png", "--device", "cuda:7"],
    "sample-device-potato": ["sample", "RUN", "--n", "2", "--out", "CWD/g.png", "--device", "potato"],
    "sample-out-empty": ["sample", "RUN", "--n", "2", "--out", ""],
    "train-out-empty": TRAIN[:-4] + ["--out", "", "--limit", "16", *tiny_sets()],
    "pull-revision-too-long": ["pull", "tester/x", "--revision", "a" * 300],
    "eval-pickled-inception-weights": ["eval", "RUN", "--extractor", "inception", "--inception-weights", "EVIL", "--n", "100"],
    "eval-missing-inception-weights": ["eval", "RUN", "--extractor", "inception", "--inception-weights", "CWD/nope.pth",
                                       "--n", "100"],
    "train-classes-do-not-match-data": TRAIN + tiny_sets() + ["--set", "num_classes=3"],
    "train-classes-on-unlabelled-folder": ["train", "dcgan", "--dataset", "FLAT", "--steps", "1", "--out", "NEW",
                                           *tiny_sets(), "--set", "num_classes=10"],
}


@pytest.mark.parametrize("argv", MISC_CASES.values(), ids=MISC_CASES.keys())
def test_devices_weight_files_and_labels(box, capsys, argv):
    if "EVIL" in argv:
        argv = [str(_evil_pickle(box)) if a == "EVIL" else a for a in argv]
    if "FLAT" in argv:
        argv = [str(_flat_folder(box)) if a == "FLAT" else a for a in argv]
    check_case(box, argv, capsys)
    assert not (box.root / "PWNED").exists(), "a pickle was unpickled"
