import json
import logging
from pathlib import Path

import pytest
import torch

from ganhub import hub, registry
from ganhub.cli import main
from ganhub.hub import BEGIN, END, HubError, check_repo_id, check_revision, metric_label, model_card
from ganhub.run import save_generator
from ganhub.sample import sample, to_grid
from ganhub.source import load_generator
from ganhub.testing import tiny_config
from ganhub.variant import build_models

FID = {"value": 124.45, "command": "ganhub eval runs/x --metrics fid --extractor fmnist",
       "protocol": {"extractor": "fmnist (weights/fmnist-classifier: 128-d features, test accuracy 91.84%)",
                    "real": "fashion-mnist, test split", "n_real": 5000, "n_generated": 5000, "seed": 0, "truncation": 1.0}}
COVERAGE = {"value": {"classes": 10, "of": 10, "kl": 0.0088, "histogram": [0.1] * 10}, "command": "ganhub eval runs/x",
            "protocol": dict(FID["protocol"])}


@pytest.fixture
def folder(tmp_path):
    v = registry.get("dcgan")
    cfg = tiny_config(v)
    torch.manual_seed(0)
    G, _ = build_models(v, cfg)
    out = tmp_path / "run"
    save_generator(out, G, variant=v, cfg=cfg, step=7,
                   recipe={"dataset": "fashion-mnist", "steps": 7, "seed": 0, "batch_size": 4, "command": "ganhub train dcgan ..."})
    meta = json.loads((out / "config.json").read_text())
    meta["metrics"] = {"fid": FID, "coverage": COVERAGE}
    (out / "config.json").write_text(json.dumps(meta))
    to_grid(sample(G.eval(), 16, 0)).save(out / "samples.png")
    (out / "checkpoint").mkdir()
    (out / "checkpoint" / "training.safetensors").write_bytes(b"resume state stays local")
    return out


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def remote_card(fake_hub, repo: str, branch: str = "main") -> str:
    return fake_hub.repos[repo].branches[branch]["README.md"].decode()


def front_matter(card: str) -> dict:
    from huggingface_hub import ModelCard

    return ModelCard(card).data.to_dict()


def test_push_then_pull_round_trips_bit_identical(fake_hub, folder, tmp_path, capsys, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    before = snapshot(folder)
    assert main(["push", str(folder), "tester/fmnist-dcgan", "--token", fake_hub.token]) == 0
    assert "tester/fmnist-dcgan" in capsys.readouterr().out
    assert main(["push", str(folder), "tester/fmnist-dcgan", "--token", fake_hub.token]) == 0  # exist_ok
    capsys.readouterr()
    assert snapshot(folder) == before, "push must not modify the folder it pushes"
    files = fake_hub.repos["tester/fmnist-dcgan"].branches["main"]
    assert sorted(files) == ["README.md", "config.json", "model.safetensors", "samples.png"]  # no checkpoint
    card = remote_card(fake_hub, "tester/fmnist-dcgan")
    assert "library_name: ganhub" in card and "pipeline_tag: unconditional-image-generation" in card
    command = json.loads((folder / "config.json").read_text())["recipe"]["command"]
    assert command.startswith("ganhub train dcgan") and command in card and "![samples](samples.png)" in card

    assert main(["pull", "tester/fmnist-dcgan"]) == 0
    pulled = Path(capsys.readouterr().out.strip())
    assert (pulled / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    assert (pulled / "README.md").read_text() == card
    a, b = load_generator(folder).G, load_generator("tester/fmnist-dcgan").G
    assert torch.equal(sample(a, 8, seed=3), sample(b, 8, seed=3))

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub.close()  # the Hub is gone: the cache must serve it
    assert torch.equal(sample(load_generator("tester/fmnist-dcgan").G, 8, seed=3), sample(a, 8, seed=3))
    out = tmp_path / "grid.png"
    assert main(["sample", "tester/fmnist-dcgan", "--n", "4", "--out", str(out)]) == 0 and out.exists()

    # the token is nowhere: not in files written, not in output, not in logs
    captured = capsys.readouterr()
    assert fake_hub.token not in captured.out + captured.err + caplog.text
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert fake_hub.token.encode() not in f.read_bytes(), f


def test_card_names_the_repo_an_honest_install_the_paper_and_metrics_by_extractor(fake_hub, folder, capsys):
    assert main(["push", str(folder), "tester/cards", "--token", fake_hub.token]) == 0
    card = remote_card(fake_hub, "tester/cards")
    assert "<user>/<repo>" not in card and "pip install ganhub" not in card
    assert "ganhub sample tester/cards --n 64" in card and "load_generator('tester/cards')" in card
    assert "not on PyPI" in card and "`ganhub-dcgan`" in card
    assert "https://arxiv.org/abs/1511.06434" in card  # DCGAN, Radford et al. 2015
    meta = front_matter(card)
    assert meta["license"] == "mit" and meta["datasets"] == ["zalando-datasets/fashion_mnist"]
    (index,) = meta["model-index"]
    assert index["name"] == "cards"
    (result,) = index["results"]
    assert result["task"]["type"] == "unconditional-image-generation"
    assert result["dataset"] == {"name": "Fashion-MNIST", "type": "zalando-datasets/fashion_mnist", "split": "test"}
    metrics = {m["type"]: m for m in result["metrics"]}
    assert metrics["fid"]["name"] == "FID (Fashion-MNIST classifier features)" and metrics["fid"]["value"] == 124.45
    assert metrics["fid"]["config"] == "fmnist" and metrics["fid"]["args"]["n_generated"] == 5000
    assert metrics["coverage"]["value"] == 10
    assert "| FID (Fashion-MNIST classifier features) ↓ | 124.5 |" in card


def test_license_dataset_and_revision_options(fake_hub, folder, capsys):
    assert main(["push", str(folder), "tester/opts", "--token", fake_hub.token, "--license", "cc-by-4.0",
                 "--dataset", "me/my-shoes", "--revision", "v2"]) == 0
    card = remote_card(fake_hub, "tester/opts", "v2")
    assert front_matter(card)["license"] == "cc-by-4.0" and front_matter(card)["datasets"] == ["me/my-shoes"]
    assert "ganhub sample tester/opts@v2 " in card
    assert "README.md" not in fake_hub.repos["tester/opts"].branches["main"]


def test_a_hand_written_card_keeps_its_prose_and_the_folder_is_untouched(fake_hub, folder, capsys):
    prose = "\n# My shoes GAN\n\nTrained on my **own** photos. Do not use for evil.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    (folder / "README.md").write_text("---\nlicense: apache-2.0\ntags:\n- shoes\nlanguage: en\n---\n" + prose)
    before = snapshot(folder)
    assert main(["push", str(folder), "tester/mine", "--token", fake_hub.token]) == 0
    assert snapshot(folder) == before
    card = remote_card(fake_hub, "tester/mine")
    assert card.endswith(prose) and BEGIN not in card  # prose byte for byte, nothing added to it
    meta = front_matter(card)
    assert meta["license"] == "apache-2.0" and meta["language"] == "en"  # the user's metadata stays
    assert {"shoes", "gan", "dcgan", "ganhub"} <= set(meta["tags"]) and meta["library_name"] == "ganhub"
    assert meta["model-index"][0]["results"][0]["metrics"][0]["name"].startswith("FID (")
    assert main(["push", str(folder), "tester/mine", "--token", fake_hub.token, "--license", "mit"]) == 0
    assert front_matter(remote_card(fake_hub, "tester/mine"))["license"] == "mit"  # an explicit option wins


def test_the_repo_card_keeps_prose_outside_the_markers(fake_hub, folder, capsys):
    assert main(["push", str(folder), "tester/edit", "--token", fake_hub.token]) == 0
    files = fake_hub.repos["tester/edit"].branches["main"]
    edited = files["README.md"].decode().replace(END, END + "\n\n## My notes\n\nThe 5th sample is my favourite.\n")
    edited = edited.replace(BEGIN, "Intro written on the Hub.\n\n" + BEGIN)
    files["README.md"] = edited.encode()
    meta = json.loads((folder / "config.json").read_text())
    meta["metrics"]["fid"]["value"] = 99.0
    (folder / "config.json").write_text(json.dumps(meta))
    assert main(["push", str(folder), "tester/edit", "--token", fake_hub.token]) == 0
    card = remote_card(fake_hub, "tester/edit")
    assert "Intro written on the Hub.\n\n" + BEGIN in card and "## My notes\n\nThe 5th sample is my favourite." in card
    assert "| 99 |" in card and "124.5" not in card and card.count(BEGIN) == 1
    assert front_matter(card)["model-index"][0]["results"][0]["metrics"][0]["value"] == 99.0


def test_legacy_generated_card_is_regenerated_and_bad_front_matter_refused(folder):
    legacy = "---\nlicense: mit\n---\n\n# ganhub · dcgan\n\n```bash\nganhub sample <user>/<repo> --n 64\n```\n"
    card = str(model_card(folder, repo_id="me/x", existing=legacy))
    assert "<user>/<repo>" not in card and "ganhub sample me/x" in card and BEGIN in card
    with pytest.raises(HubError, match="metadata block"):
        model_card(folder, existing="---\n- a list\n- not a mapping\n---\n\ntext\n")


@pytest.mark.parametrize("repo_id", ["../etc", "a/b/c", "..", "", "a", "/abs", "user/re po", "user/repo.git",
                                     "user/--x", "user/" + "x" * 97, "user/répo", "us\x00er/x"])
def test_invalid_repo_ids_are_called_invalid_before_any_request(fake_hub, folder, capsys, repo_id):
    for argv in (["pull", repo_id], ["push", str(folder), repo_id, "--token", fake_hub.token]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "not a valid Hub repo id" in err
        assert "network" not in err
    assert fake_hub.requests == []


@pytest.mark.parametrize("revision", ["../../../x", "..", "/etc/passwd", "a\\b", "main\n", "a/../b", "", ".hidden",
                                      "x.lock", "a b", "a:b", "a//b", "main/", "@", "a@{1}", "\x7f"])
def test_revisions_that_could_leave_the_cache_are_refused(fake_hub, folder, tmp_path, capsys, revision):
    before = sorted(p for p in tmp_path.parent.rglob("*"))
    for argv in (["pull", "tester/x", "--revision", revision],
                 ["push", str(folder), "tester/x", "--token", fake_hub.token, "--revision", revision]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "not a valid revision" in err
    assert fake_hub.requests == []
    assert sorted(p for p in tmp_path.parent.rglob("*")) == before


def test_valid_ids_and_revisions_pass():
    assert check_repo_id("Some-User/model_v1.2") == "Some-User/model_v1.2"
    for rev in ("main", "v1.0", "refs/pr/3", "feature/x", "0" * 40):
        assert check_revision(rev) == rev
    assert hub.parse_source("a/b@refs/pr/1") == ("a/b", "refs/pr/1")
    with pytest.raises(HubError, match="names no revision"):
        hub.parse_source("a/b@")


def test_error_paths_are_one_line(fake_hub, folder, capsys, monkeypatch):
    def run(argv):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
        assert fake_hub.token not in err and "hf_wrong" not in err
        return err

    assert "no Hugging Face token" in run(["push", str(folder), "tester/x"])
    assert "refused the token (401)" in run(["push", str(folder), "tester/x", "--token", "hf_wrongTokenValue12345"])
    assert "not found" in run(["pull", "tester/does-not-exist"])
    main(["push", str(folder), "tester/private", "--private", "--token", fake_hub.token])
    capsys.readouterr()
    assert "not found (or private" in run(["pull", "tester/private"])
    assert main(["pull", "tester/private", "--token", fake_hub.token]) == 0
    capsys.readouterr()
    assert "revision not found" in run(["pull", "tester/private", "--revision", "nope", "--token", fake_hub.token])
    assert "not a Hub license id" in run(["push", str(folder), "tester/x", "--token", fake_hub.token, "--license", "MIT License"])
    assert "not a Hub dataset id" in run(["push", str(folder), "tester/x", "--token", fake_hub.token, "--dataset", "a/b/c"])
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "HF_HUB_OFFLINE=1" in run(["pull", "tester/never-downloaded"])


@pytest.mark.parametrize("status, words", [(500, "failed (500)"), (429, "rate-limiting"),
                                           (403, "refused the token (403)"), (404, "not found")])
def test_hub_failures_however_wrapped(fake_hub, folder, capsys, status, words):
    fake_hub.plain_errors = True  # no X-Error-Code: huggingface_hub cannot classify the error itself
    assert main(["pull", "tester/nothing-here"]) == 2
    assert "repo tester/nothing-here not found" in capsys.readouterr().err  # a bare 404 is still "not found"
    fake_hub.force_status = status
    for argv in (["pull", "tester/nothing-here", "--token", fake_hub.token],
                 ["push", str(folder), "tester/new", "--token", fake_hub.token]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err and "network" not in err, err


def test_push_refuses_a_folder_without_a_readable_model_before_any_request(fake_hub, folder, capsys):
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    assert main(["push", str(folder), "tester/x", "--token", fake_hub.token]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err
    (folder / "model.safetensors").unlink()
    assert main(["push", str(folder), "tester/x", "--token", fake_hub.token]) == 2
    assert "has no model.safetensors" in capsys.readouterr().err
    assert fake_hub.requests == []


def test_pull_refuses_a_repo_with_a_malformed_config(fake_hub, folder, capsys):
    assert main(["push", str(folder), "tester/bad", "--token", fake_hub.token]) == 0
    capsys.readouterr()
    fake_hub.repos["tester/bad"].branches["main"]["config.json"] = b'["a list", "not a config"]'
    assert main(["pull", "tester/bad"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: tester/bad is not a usable ganhub repo: config.json ") and err.count("\n") == 1
    assert ".cache" not in err


def test_tokens_are_scrubbed_from_wrapped_errors(monkeypatch, capsys):
    import huggingface_hub

    secret = "hf_leakyLeakyToken0123456789"

    def boom(*a, **k):
        raise RuntimeError(f"server echoed Authorization: Bearer {secret}") from ValueError(secret)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", boom)
    assert main(["pull", "tester/x", "--token", secret]) == 2
    err = capsys.readouterr().err
    assert secret not in err and "hf_***" in err and err.count("\n") == 1


def test_metric_labels_name_the_extractor():
    assert metric_label("fid", FID) == "FID (Fashion-MNIST classifier features)"
    inc = {"protocol": {"extractor": "inception-v3-compat (torch-fidelity; 2048-d pool3 features)"}}
    assert metric_label("kid", inc) == "KID (Inception-v3 features)"
    assert metric_label("coverage", COVERAGE) == "classes covered (Fashion-MNIST classifier predictions)"
    assert metric_label("modes_covered", {"protocol": {"dataset": "ring8"}}) == "modes covered"


def test_unreachable_hub_fails_fast(tmp_path, monkeypatch, capsys):
    import socket
    import time

    from tests.fakehub import point_client_at

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    point_client_at(monkeypatch, f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    t = time.time()
    assert main(["pull", "tester/anything"]) == 2
    assert "cannot reach the Hub" in capsys.readouterr().err and time.time() - t < 30


def test_card_of_a_conditional_model(tmp_path):
    v = registry.get("sngan")
    cfg = v.make_config(**{**dict(v.test_config), "num_classes": 10})
    G, _ = build_models(v, cfg)
    out = tmp_path / "cond"
    save_generator(out, G, variant=v, cfg=cfg, step=1, recipe={"dataset": "fashion-mnist", "steps": 1, "seed": 0})
    card = str(model_card(out, repo_id="me/cond"))
    assert "10 classes (class-conditional)" in card and "sample(G, 64, seed=0, labels=3)" in card
    assert "class-conditional" in front_matter(card)["tags"] and "https://arxiv.org/abs/1802.05957" in card
    assert (out / "README.md").exists() is False  # building a card writes nothing


def test_card_of_a_checkpoint_taken_before_its_runs_end_says_so(tmp_path):
    """A train_curve checkpoint (step 4 of a run planned for 10) must not be carded as the full run."""
    v = registry.get("dcgan")
    cfg = v.make_config(**dict(v.test_config))
    G, _ = build_models(v, cfg)
    recipe = {"dataset": "fashion-mnist", "steps": 10, "seed": 0, "batch_size": 4}
    save_generator(tmp_path / "mid", G, variant=v, cfg=cfg, step=4, recipe=recipe)
    save_generator(tmp_path / "end", G, variant=v, cfg=cfg, step=10, recipe=recipe)
    mid = "- steps: 4 (G updates; batch size 4), a checkpoint of the command below, which runs to 10\n"
    assert mid in str(model_card(tmp_path / "mid"))
    assert "- steps: 10 (G updates; batch size 4)\n" in str(model_card(tmp_path / "end"))
