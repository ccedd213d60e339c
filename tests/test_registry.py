import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ganhub import registry
from ganhub.errors import UnknownVariant
from ganhub.testing import check_variant
from ganhub.variant import Variant
from tests.plugin_fixture import make_fake_distribution

ROOT = Path(__file__).resolve().parent.parent

BUILTINS = {"vanilla", "dcgan", "wgan-gp", "sngan", "stylegan-lite"}


@pytest.fixture
def fake_dist(tmp_path, monkeypatch):
    yield from _installed(tmp_path, monkeypatch)


def _installed(tmp_path, monkeypatch, **kinds):
    """The fake distribution on sys.path for one test; its modules and the registry forgotten after."""
    root = make_fake_distribution(tmp_path / "site", broken=True, extra=True, **kinds)
    monkeypatch.syspath_prepend(str(root))
    registry.reload()
    yield root
    for mod in [m for m in sys.modules if m.startswith("fakeplug_")]:
        del sys.modules[mod]
    registry.reload()


def test_builtins_register_through_entry_points():
    names = {e.name for e in registry.entries()}
    assert BUILTINS <= names
    for e in registry.entries():
        if e.name in BUILTINS:
            pyproject = (ROOT / "plugins" / e.name / "pyproject.toml").read_text()
            declared = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)  # installed from plugins/
            assert e.package == f"ganhub-{e.name}" and e.version == declared
            assert isinstance(e.variant, Variant)
    assert not [f for f in registry.failures() if f.package.startswith("ganhub")]


def test_third_party_plugin_loads_and_broken_ones_are_reported(fake_dist):
    names = {e.name for e in registry.entries()}
    assert "toy-mlp" in names
    assert registry.entry("toy-mlp").package == "fakeplug" and registry.entry("toy-mlp").version == "0.3"
    failures = {f.entry_point.split(" = ")[0]: f for f in registry.failures()}
    assert "simulated: this plugin needs" in failures["broken-one"].error
    assert failures["broken-one"].package == "fakeplug" and failures["broken-one"].version == "0.3"
    assert "plugin API 99" in failures["future"].error and "upgrade" in failures["future"].error
    dup = [f for f in registry.failures() if "duplicate variant name 'dcgan'" in f.error]
    assert {f.package for f in dup} == {"ganhub-dcgan", "fakeplug"}  # both claimants refused, neither wins silently
    assert "uninstall one of them" in dup[0].error
    assert {"vanilla", "wgan-gp", "sngan", "stylegan-lite"} <= names


def test_third_party_plugin_passes_conformance_suite(fake_dist):
    check_variant("toy-mlp")


def test_cli_list_survives_broken_plugin(tmp_path):
    root = make_fake_distribution(tmp_path / "site", broken=True)
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, "-m", "ganhub.cli", "list", "--json"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert BUILTINS | {"toy-mlp"} <= {v["name"] for v in data["variants"]}
    assert [f["package"] for f in data["failures"]] == ["fakeplug"]
    text = subprocess.run([sys.executable, "-m", "ganhub.cli", "list"], env=env, capture_output=True, text=True)
    assert text.returncode == 0 and "FAILED broken-one" in text.stdout and "simulated" in text.stdout


def test_validation_names_the_fix():
    good = registry.get("dcgan")
    with pytest.raises(registry.PluginError, match="make them equal"):
        registry.validate(good, "other-name")
    with pytest.raises(registry.PluginError, match="must point to a ganhub.variant.Variant"):
        registry.validate(object(), "x")
    import dataclasses

    with pytest.raises(registry.PluginError, match="one-line summary"):
        registry.validate(dataclasses.replace(good, summary="two\nlines"), "dcgan")
    with pytest.raises(registry.PluginError, match="reg_phases"):
        registry.validate(dataclasses.replace(good, reg_phases={"R1": ("X", 4)}), "dcgan")
    with pytest.raises(registry.PluginError, match="is missing"):
        registry.validate(dataclasses.replace(good, loss=lambda phase, G: None), "dcgan")
    with pytest.raises(registry.PluginError, match="post_step must be a function"):
        registry.validate(dataclasses.replace(good, post_step=lambda G, D: None), "dcgan")
    with pytest.raises(registry.PluginError, match="make_optimizers must be a function"):
        registry.validate(dataclasses.replace(good, make_optimizers=lambda G: None), "dcgan")
    with pytest.raises(registry.PluginError, match="test_config is invalid: config key 'batch_size'"):
        registry.validate(dataclasses.replace(good, test_config={"batch_size": 0}), "dcgan")


@pytest.fixture
def hostile_dist(tmp_path, monkeypatch):
    yield from _installed(tmp_path, monkeypatch, hostile=True)


def test_escapes_at_import_are_isolated_and_listed(hostile_dist):
    names = {e.name for e in registry.entries()}  # must not raise SystemExit / KeyboardInterrupt / GeneratorExit
    assert {"toy-mlp", "vanilla", "sngan"} <= names
    failures = {f.name: f for f in registry.failures()}
    assert "SystemExit(3)" in failures["exits"].error and "sys.exit()" in failures["exits"].error
    assert "KeyboardInterrupt raised by the plugin" in failures["kbint"].error
    assert "GeneratorExit" in failures["genexit"].error
    assert all(failures[n].package == "fakeplug" and failures[n].version == "0.3" for n in ("exits", "kbint", "genexit"))
    assert all("\n" not in f.error for f in failures.values())


def test_v1_plugins_get_one_migration_line(hostile_dist):
    failures = {f.name: f.error for f in registry.failures()}
    for name in ("old-style", "old-explicit", "old-train-step"):
        msg = failures[name]
        assert "plugin API 1" in msg, (name, msg)
        assert "fake, real_labels, fake_labels" in msg and "train_step" in msg and "api_version=2" in msg, msg
        assert "\n" not in msg


def test_contract_breaches_are_refused_naming_the_fix(hostile_dist):
    failures = {f.name: f.error for f in registry.failures()}
    assert "declares on_epoch_end, which ganhub never calls" in failures["extra-hook"]
    assert "config key 'width' must be >= 1, got 0" in failures["bad-bounds"]


@pytest.mark.parametrize("name, why", [
    ("broken-one", "failed to load: ImportError: simulated"),
    ("exits", "failed to load: SystemExit(3)"),
    ("future", "targets plugin API 99"),
    ("old-style", "plugin API 1"),
    ("dcgan", "duplicate variant name 'dcgan'"),
])
def test_using_an_installed_but_failed_plugin_says_why(hostile_dist, name, why):
    with pytest.raises(UnknownVariant) as e:
        registry.get(name)
    msg = str(e.value)
    assert f"variant {name!r} is installed" in msg and why in msg and "\n" not in msg, msg


def test_a_real_ctrl_c_during_plugin_import_still_interrupts(tmp_path):
    root = make_fake_distribution(tmp_path / "site", broken=False, sigint=True)
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, "-c", "from ganhub import registry; registry.entries(); print('SURVIVED')"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert "SURVIVED" not in out.stdout and "KeyboardInterrupt" in out.stderr, (out.stdout, out.stderr[-500:])


def test_plugin_error_is_a_ganhub_error():
    from ganhub.errors import GanhubError, PluginError

    assert issubclass(PluginError, GanhubError) and registry.PluginError is PluginError


def test_unknown_variant_lists_known_ones():
    with pytest.raises(UnknownVariant, match="installed variants: .*dcgan"):
        registry.get("nope")
