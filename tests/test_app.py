"""Drive the app the way gradio tests itself: launch it, then call every api_name through gradio_client."""

import json
import re
import socket
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from gradio_client import Client
from PIL import Image

from ganhub import registry

A, B = uuid.uuid4().hex, uuid.uuid4().hex  # two visitors (the secret each browser keeps)
TINY = json.dumps(registry.get("dcgan").test_config)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_module(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the app does on a Space (its trainings run in their own processes)
    import app

    app.RUNS = tmp_path_factory.mktemp("app-runs")
    yield app
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def client(app_module):
    port = free_port()
    app_module.launch(prevent_thread_lock=True, server_port=port, server_name="127.0.0.1", quiet=True)
    yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    app_module.demo.close()


def error_of(call) -> str:
    with pytest.raises(Exception) as exc:
        call()
    return str(exc.value)


def wait_for(job, predicate, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if any(predicate(o) for o in job.outputs()):
            return next(o for o in job.outputs() if predicate(o))
        if job.done():
            break
        time.sleep(0.2)
    raise AssertionError(f"never seen; last outputs: {[o[2] for o in job.outputs()[-3:]]}")


def test_every_endpoint_is_described_and_its_outputs_named(app_module):
    info = app_module.demo.get_api_info()
    names = set(info["named_endpoints"])
    assert {"/sample", "/interpolate", "/style_mix", "/describe", "/train", "/stop", "/download", "/evaluate",
            "/push", "/pull", "/plugins"} <= names
    for name, ep in info["named_endpoints"].items():
        assert ep["description"].strip(), f"{name} has no description"
        for out in ep["returns"]:
            assert not re.fullmatch(r"value_\d+", out["label"]), f"{name} returns an unnamed {out['label']}"


def test_plugins_table_is_readable(client):
    variants, failures = client.predict(api_name="/plugins")
    rows = {r[0]: dict(zip(variants["headers"], r)) for r in variants["data"]}
    assert {"vanilla", "dcgan", "wgan-gp", "sngan", "stylegan-lite"} <= set(rows)
    assert rows["stylegan-lite"]["offers"] == "style mixing, ψ" and rows["dcgan"]["offers"] == "-"
    assert rows["dcgan"]["package"].startswith("ganhub-dcgan ")
    assert failures["headers"] == ["entry point", "package", "error"]


def test_sample_is_a_lossless_png_at_the_shown_scale(client):
    png = client.predict("dcgan", 0, 16, 1.0, -1, A, api_name="/sample")
    img = Image.open(png)
    assert Path(png).name == "dcgan-seed0-n16.png" and img.format == "PNG"
    assert img.size == (4 * (4 * 34 + 2), 4 * (4 * 34 + 2))  # 16 samples of 32 px in a 4x4 grid, shown x4
    again = client.predict("dcgan", 0, 16, 1.0, -1, A, api_name="/sample")
    assert Image.open(again).tobytes() == img.tobytes()  # same seed, same images
    other = client.predict("dcgan", 1, 16, 1.0, -1, A, api_name="/sample")
    assert Image.open(other).tobytes() != img.tobytes()


def test_interpolation_is_an_animation_shown_large(client):
    gif, strip = client.predict("dcgan", 3, 4, "slerp", 7, A, api_name="/interpolate")
    anim = Image.open(gif)
    assert anim.format == "GIF" and anim.n_frames >= 7 and anim.width >= 256
    assert Path(gif).name == "dcgan-slerp-seed3-to-4.gif"
    assert Image.open(strip).format == "PNG" and Image.open(strip).width > Image.open(strip).height * 5


def test_style_mix_is_labelled_and_refused_without_a_mapping_network(client):
    from ganhub.sample import style_mix
    from ganhub.source import load_generator

    path = client.predict("stylegan-lite", "1,2", "3,4,5", 3, A, api_name="/style_mix")
    labelled = Image.open(path)
    bare = style_mix(load_generator("stylegan-lite").G, [1, 2], [3, 4, 5], 3)
    assert labelled.width > bare.width * 3 and labelled.height > bare.height * 3  # enlarged, plus label margins
    assert "no mapping network" in error_of(lambda: client.predict("dcgan", "1", "2", 3, A, api_name="/style_mix"))


def test_the_default_crossover_visibly_mixes(app_module):
    """With the page's default seeds, mixed images differ clearly from both of their sources (the old
    default, 4, mostly copied the row image)."""
    import torch

    from ganhub.sample import latents

    G = app_module.load(app_module.weights_dir() / "stylegan-lite").G
    k = app_module.crossover_slider("stylegan-lite").value
    assert 1 <= k < G.num_ws

    def synth(w):
        torch.manual_seed(0)
        return G.synthesis(w[:, None].repeat(1, G.num_ws, 1) if w.dim() == 2 else w)

    with torch.no_grad():
        w = G.mapping(torch.cat([latents(1, G.z_dim, s) for s in (1, 2, 3, 4, 5, 6)]))
        rows, cols = w[:3].repeat_interleave(3, 0), w[3:].repeat(3, 1)  # the 9 mixed tiles of the page
        xr, xc = synth(rows), synth(cols)
        xm = synth(torch.stack([rows] * k + [cols] * (G.num_ws - k), 1))
    apart = float((xr - xc).abs().mean())
    assert float((xm - xr).abs().mean()) > 0.3 * apart and float((xm - xc).abs().mean()) > 0.3 * apart


def test_a_model_card_beside_the_source_and_psi_only_with_a_mapping_network(app_module, client):
    card = client.predict("dcgan", A, api_name="/describe")
    assert "dcgan" in card and "training steps on Fashion-MNIST" in card
    assert "FID (Fashion-MNIST classifier features)" in card and "lower is better" in card
    _, psi, cls = app_module.source_controls("stylegan-lite", A, None)
    assert psi.visible is True and cls.visible is False
    _, psi, cls = app_module.source_controls("dcgan", A, None)
    assert psi.visible is False and cls.visible is False


def test_a_conditional_generator_gets_a_class_picker(app_module, client):
    import dataclasses

    from ganhub.run import RunFolder, RunSpec
    from ganhub.testing import tiny_config
    from ganhub.variant import build_models

    v = registry.get("sngan")
    cfg = dataclasses.replace(tiny_config(v), num_classes=10)
    G, _ = build_models(v, cfg)
    folder = app_module.RUNS / app_module.visitor_key(A, None) / "sngan-c0ffee00"
    folder.mkdir(parents=True)
    RunFolder(folder).save_model(G.eval(), RunSpec.create(v, cfg, dataset="fashion-mnist", steps=1), 1)
    card, psi, cls = app_module.source_controls("run:sngan-c0ffee00", A, None)
    assert "conditional on 10 classes" in card and cls.visible is True and psi.visible is False
    assert ("Sneaker", 7) in cls.choices and ("one row per class", -2) in cls.choices
    one = client.predict("run:sngan-c0ffee00", 0, 4, 1.0, 7, A, api_name="/sample")
    assert Path(one).name == "sngan-c0ffee00-seed0-n4-class7.png"
    rows = Image.open(client.predict("run:sngan-c0ffee00", 0, 20, 1.0, -2, A, api_name="/sample"))
    assert rows.height > 4 * rows.width  # ten rows (one per class) of two
    assert "class must be from 0 to 9" in error_of(
        lambda: client.predict("run:sngan-c0ffee00", 0, 4, 1.0, 12, A, api_name="/sample"))


def test_first_visitors_see_the_best_bundled_model_already_sampled(app_module):
    from ganhub.run import RunFolder
    from ganhub.source import bundled, weights_dir

    fids = {n: RunFolder(weights_dir() / n).metrics["fid"]["value"] for n in bundled()}
    assert app_module.DEFAULT == min(fids, key=fids.get)
    shown = {b.elem_id: b for b in app_module.demo.blocks.values() if getattr(b, "elem_id", None)}
    for elem in ("sample-output", "interp-gif"):
        assert shown[elem].value and shown[elem].value["path"], f"{elem} is empty on the first visit"


@pytest.mark.parametrize("call, expected", [
    (("dcgan", None, 4, 1.0, -1, A, "/sample"), "seed is empty"),
    (("", 0, 4, 1.0, -1, A, "/sample"), "choose a model first"),
    (("no-such-model", 0, 4, 1.0, -1, A, "/sample"), "is not a bundled model"),
    (("/etc", 0, 4, 1.0, -1, A, "/sample"), "is not a bundled model"),
    (("run:../../etc", 0, 4, 1.0, -1, A, "/sample"), "choose one of your runs"),
    (("dcgan", 0, 4, 1.0, 3, A, "/sample"), "dcgan is unconditional"),
    (("dcgan", 0, None, "slerp", 5, A, "/interpolate"), "seed B is empty"),
    (("stylegan-lite", "a, b", "1", 2, A, "/style_mix"), "must be whole numbers"),
    (("stylegan-lite", "", "1", 2, A, "/style_mix"), "give 1 to 8 seeds"),
    (("dcgan", "fashion-mnist", None, None, "", "{}", 0, "auto", False, A, "/train"), "steps is empty"),
    (("dcgan", "fashion-mnist", None, 10, "", "{", 0, "auto", False, A, "/train"), "not valid JSON"),
    (("dcgan", "fashion-mnist", None, 10, "", '{"lr_d": -1}', 0, "auto", False, A, "/train"), "lr_d"),
    (("dcgan", "ring8", None, 10, "", "{}", 0, "auto", False, A, "/train"), "cannot learn"),
    (("dcgan", "upload", None, 10, "", "{}", 0, "auto", False, A, "/train"), "upload a .zip"),
    (("dcgan", "fashion-mnist", None, 10, "nope", "{}", 0, "auto", False, A, "/train"), "choose one of your runs"),
    (("dcgan", "fashion-mnist", None, 10, "", "{}", 0, "auto", True, A, "/train"), "dcgan cannot learn classes"),
    (("sngan", "ring8", None, 10, "", "{}", 0, "auto", True, A, "/train"), "cannot learn"),
    (("sngan", "upload", None, 10, "", "{}", 0, "auto", True, A, "/train"), "set num_classes in the config"),
    (("dcgan", "fashion-mnist", None, 10**7, "", "{}", 0, "auto", False, A, "/train"), "at most 20,000 steps"),
    (("", A, "/download"), "choose one of your runs to download"),
    (([], "", ["fid"], 200, A, "/evaluate"), "choose at least one model"),
    ((["dcgan"], "", [], 200, A, "/evaluate"), "choose at least one metric"),
    (("dcgan", "", False, "", A, "/push"), "enter the repo id"),
    (("", "", "/pull"), "enter a repo id"),
    (("not a repo", "", "/pull"), "not a valid Hub repo id"),
])
def test_every_bad_box_gets_a_sentence(client, call, expected):
    *args, api = call
    msg = error_of(lambda: client.predict(*args, api_name=api))
    assert expected in msg
    assert "Traceback" not in msg and "unexpectedly" not in msg and "went wrong" not in msg
    assert not re.search(r"(^|\s)--\w", msg) and "/tmp" not in msg  # no CLI flags, no server paths


def test_library_messages_are_put_in_the_pages_words(app_module):
    run = app_module.RUNS / "0123abcd" / "dcgan-1a2b3c4d"
    web = app_module.web
    assert web(f"stopped at step 5; resume with --resume (checkpoint in {run})") == (
        "stopped at step 5; resume with Train (with your run chosen) (checkpoint in your run dcgan-1a2b3c4d)")
    assert web("lower the learning rates (--set lr_d=... lr_g=...)") == "lower the learning rates (lr_d (Advanced → config) lr_g=...)"
    assert "/" not in web("cannot read /home/user/.cache/ganhub/x.json").replace("x.json", "")
    assert web("cannot reach the Hub (https://huggingface.co/api/x)") == "cannot reach the Hub (https://huggingface.co/api/x)"
    assert web("no Hugging Face token: log in with `hf auth login`, set HF_TOKEN or pass --token") == (
        "no Hugging Face token: sign in with Hugging Face")


def test_training_streams_both_curves_stops_continues_and_reproduces(app_module, client, tmp_path):
    import shlex
    import subprocess
    import sys

    import torch
    from safetensors.torch import load_file

    job = client.submit("dcgan", "fashion-mnist", None, 400, "", TINY, 64, "fp32", False, A, api_name="/train")
    first = wait_for(job, lambda o: "Step" in str(o[2]))
    plot = first[1]
    losses = {row[1] for row in plot["data"]}
    assert {"loss_D", "loss_G"} <= losses and min(row[0] for row in plot["data"]) == 1  # from the first step
    shown = int(re.search(r"Step (\d+)", first[2]).group(1))
    assert max(row[0] for row in plot["data"]) == shown  # the curves are in step with the status line
    run = next(o[3]["value"] for o in job.outputs() if isinstance(o[3], dict) and o[3].get("value"))
    other_tab = Client(client.src, verbose=False)  # a reload is a new session; the visitor is the same browser
    assert "Nothing of yours" in other_tab.predict(run, B, api_name="/stop")  # another visitor cannot stop it
    assert "Stopping" in other_tab.predict(run, A, api_name="/stop")
    last = wait_for(job, lambda o: "Stopped at step" in str(o[2]))
    stopped_at = int(re.search(r"Stopped at step (\d+)", last[2]).group(1))
    assert 0 < stopped_at < 400 and "Press **Train** to continue" in last[2]
    # continuing: the run's own variant and config, whatever the boxes show now
    final = client.predict("sngan", "fashion-mnist", None, stopped_at + 3, run, "{}", 0, "auto", False, A, api_name="/train")
    assert f"your run {run} trained {stopped_at + 3:,} steps" in final[2]
    folder = app_module.RUNS / app_module.visitor_key(A, None) / run
    meta = json.loads((folder / "config.json").read_text())
    assert meta["step"] == stopped_at + 3 and meta["variant"] == "dcgan"
    argv = shlex.split(meta["recipe"]["command"])  # the CLI equivalent, with no server path in it
    assert argv[:4] == ["ganhub", "train", "dcgan", "--dataset"] and argv[argv.index("--out") + 1] == run
    argv[argv.index("--out") + 1] = str(tmp_path / "cli")
    subprocess.run([sys.executable, "-m", "ganhub.cli", *argv[1:], "--quiet"], check=True)  # as a user runs it
    ours, theirs = load_file(folder / "model.safetensors"), load_file(tmp_path / "cli" / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert client.predict(run, A, api_name="/download").endswith(f"{run}.zip")
    png = client.predict(f"run:{run}", 0, 4, 1.0, -1, A, api_name="/sample")  # the visitor's own run as a source
    assert Image.open(png).format == "PNG"


def test_a_visitors_zip_is_kept_beside_their_runs_and_trains_with_adaptive_augmentation(app_module, client,
                                                                                       tmp_path):
    """Gradio's copy of an upload is temporary: the run must record (and continue from) a copy of its own."""
    import io
    import zipfile

    from gradio_client import handle_file

    def zip_of(name: str, members: dict[str, tuple[int, int]]) -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as z:
            for i, (member, size) in enumerate(members.items()):
                buf = io.BytesIO()
                Image.new("RGB", size, (40 * i % 256, 90, 200)).save(buf, format="PNG")
                z.writestr(member, buf.getvalue())
        return path

    sizes = {f"{kind}/{i}.png": (24 + i, 30) for kind in ("shirts", "shoes") for i in range(10)}
    mine = zip_of("my shirts.zip", sizes)
    job = client.submit("dcgan", "upload", handle_file(str(mine)), 3, "", TINY, 0, "fp32", False, A,
                        api_name="/train")
    job.result()
    said = [str(o[2]) for o in job.outputs()]
    assert "trained 3 steps" in said[-1], said[-3:]
    start = next(t for t in said if "samples" in t)
    assert "(20 samples)" in start and "at adaptive strength" in start, start  # 20 images: augmentation is on
    run = re.search(r"your run (\S+) trained", said[-1]).group(1)
    home = app_module.RUNS / app_module.visitor_key(A, None)
    recipe = json.loads((home / run / "config.json").read_text())["recipe"]
    assert re.fullmatch(r"uploads/my-shirts-[0-9a-f]{12}\.zip", recipe["dataset"]), recipe["dataset"]
    assert (home / recipe["dataset"]).read_bytes() == mine.read_bytes()
    assert f"--dataset {recipe['dataset']} " in recipe["command"] and "/tmp" not in recipe["command"]
    final = client.predict("dcgan", "fashion-mnist", None, 5, run, "{}", 0, "auto", False, A,
                           api_name="/train")
    assert f"your run {run} trained 5 steps" in final[2]  # continued from the kept copy
    again = client.predict("dcgan", "upload", handle_file(str(mine)), 2, "", TINY, 0, "fp32", False, A,
                           api_name="/train")
    kept = [p.name for p in (home / "uploads").iterdir()]
    assert "trained 2 steps" in again[2] and kept == [Path(recipe["dataset"]).name]  # the same .zip is reused
    empty = zip_of("notes.zip", {})
    msg = error_of(lambda: client.predict("dcgan", "upload", handle_file(str(empty)), 2, "", TINY, 0, "fp32",
                                          False, A, api_name="/train"))
    assert "holds no image files" in msg and "/tmp" not in msg
    assert [p.name for p in (home / "uploads").iterdir()] == kept  # a refused upload is not kept


def test_an_upload_that_cannot_be_kept_says_so_and_leaves_no_part_behind(app_module, monkeypatch, tmp_path):
    import shutil

    def full(src, dst):
        Path(dst).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    zipped = tmp_path / "mine.zip"
    zipped.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip
    monkeypatch.setattr(shutil, "copyfile", full)
    msg = error_of(lambda: app_module.keep_upload(str(zipped), "f" * 24))
    assert "could not be kept on this server" in msg and "/" not in msg
    assert list((app_module.RUNS / ("f" * 24) / "uploads").iterdir()) == []


def test_runs_belong_to_their_visitor(app_module, client):
    """After a reload a visitor gets their runs back; another visitor can neither see nor use them."""
    key = app_module.visitor_key(A, None)
    (app_module.RUNS / key / "dcgan-feedbeef").mkdir(parents=True)
    (app_module.RUNS / key / "dcgan-feedbeef" / "config.json").write_text(
        (app_module.weights_dir() / "dcgan" / "config.json").read_text())
    mine = app_module.welcome(A, None)
    assert mine[0] == A and "dcgan-feedbeef" in {v for _, v in mine[1].choices}
    theirs = app_module.welcome(B, None)
    assert "dcgan-feedbeef" not in {v for _, v in theirs[1].choices}
    assert ("your run dcgan-feedbeef", "run:dcgan-feedbeef") not in theirs[2].choices
    new = app_module.welcome("", None)[0]
    assert re.fullmatch(r"[0-9a-f]{32}", new) and new not in (A, B)  # a new browser gets a fresh secret
    for api, args in (("/download", ("dcgan-feedbeef", B)), ("/sample", ("run:dcgan-feedbeef", 0, 4, 1.0, -1, B))):
        assert "choose one of your runs" in error_of(lambda api=api, args=args: client.predict(*args, api_name=api))
    assert app_module.visitor_key(A, None) != app_module.visitor_key(B, None)
    assert re.fullmatch(r"[0-9a-f]{24}", app_module.visitor_key("../../etc", None))  # never a path


def test_the_line_is_fair(app_module, monkeypatch):
    Job, line = app_module.Job, app_module.Line()
    monkeypatch.setattr(app_module, "LIMITS", replace(app_module.LIMITS, slots=1, waiting=1, runs_per_hour=1))
    a, b, c = Job("a", "r1"), Job("b", "r2"), Job("c", "r3")
    line.join(a)
    line.join(b)
    assert "already have a training" in error_of(lambda: line.join(Job("a", "again")))
    assert "the Space is busy" in error_of(lambda: line.join(c))
    assert line.turn(a) == 0 and line.turn(b) == 1  # first come, first served
    line.leave(a)
    assert b.wake.is_set() and line.turn(b) == 0
    line.leave(b)
    assert "in the last hour" in error_of(lambda: line.join(Job("a", "r4")))  # a's quota is used up


def test_a_waiting_visitor_is_told_why_and_can_leave(app_module, client, monkeypatch):
    monkeypatch.setattr(app_module, "LIMITS", replace(app_module.LIMITS, slots=1))
    first = client.submit("vanilla", "ring8", None, 20_000, "", "{}", 0, "fp32", False, A, api_name="/train")
    wait_for(first, lambda o: "Step" in str(o[2]))
    second_tab = Client(client.src, verbose=False)
    second = second_tab.submit("dcgan", "fashion-mnist", None, 10, "", TINY, 64, "fp32", False, B, api_name="/train")
    waiting = wait_for(second, lambda o: "in line" in str(o[2]), 60)
    assert "you are number 1 in line" in waiting[2] and "runs 1 at once" in waiting[2] and "Stop" in waiting[2]
    assert "You left the line" in second_tab.predict("", B, api_name="/stop")
    wait_for(second, lambda o: "You left the line" in str(o[2]), 30)
    assert not (app_module.RUNS / app_module.visitor_key(B, None)).exists() or not any(
        (app_module.RUNS / app_module.visitor_key(B, None)).iterdir())  # nothing was trained for B
    client.predict("", A, api_name="/stop")
    wait_for(first, lambda o: "Stopped at step" in str(o[2]), 60)
    deadline = time.time() + 30
    while app_module.LINE.running and time.time() < deadline:  # the slot frees when the process has ended
        time.sleep(0.2)
    assert not app_module.LINE.running and not app_module.LINE.waiting


def test_an_error_inside_the_training_process_is_one_sentence(client):
    msg = error_of(lambda: client.predict("sngan", "fashion-mnist", None, 5, "", '{"num_classes": 3}', 64, "fp32",
                                          False, A, api_name="/train"))
    assert "num_classes=3 but fashion-mnist has 10 classes" in msg
    assert "checkpoint" not in msg and "Traceback" not in msg and "--" not in msg


def test_a_run_stops_at_the_time_quota_and_says_so(app_module, client, monkeypatch):
    monkeypatch.setattr(app_module, "LIMITS", replace(app_module.LIMITS, minutes=0.02))
    final = client.predict("vanilla", "ring8", None, 20_000, "", "{}", 0, "fp32", False, A, api_name="/train")
    assert "this server allows 0.02 minutes per run" in final[2] and "Press **Train** to continue" in final[2]
    step = int(re.search(r"Stopped at step ([\d,]+)", final[2]).group(1).replace(",", ""))
    assert 0 < step < 20_000


def test_evaluate_names_each_metric_its_direction_and_protocol(client):
    table, protocol, thumbs = client.predict(["dcgan", "stylegan-lite"], "", ["fid", "coverage"], 200, A,
                                             api_name="/evaluate")
    assert [row[0] for row in table["data"]] == ["dcgan", "stylegan-lite"]
    assert "FID ↓" in table["headers"] and "classes covered ↑" in table["headers"]
    assert "FID (Fashion-MNIST classifier features)** ↓ lower is better" in protocol
    assert "classes covered (Fashion-MNIST classifier predictions)** ↑ higher is better" in protocol
    assert protocol.count("n generated: 200") == 1 and "/work" not in protocol  # what they share, said once
    sheet = Image.open(thumbs)
    assert sheet.width > 1.8 * sheet.height  # two 4x4 grids side by side, named underneath


def test_on_a_space_only_the_visitors_token_pushes_and_only_permitted_sources(app_module, fake_hub, monkeypatch):
    import gradio as gr

    monkeypatch.setenv("SYSTEM", "spaces")
    monkeypatch.setenv("SPACE_ID", "tester/ganhub")
    monkeypatch.setenv("HF_TOKEN", fake_hub.token)  # the Space owner's valid token must never be used
    assert app_module.on_space()
    with pytest.raises(gr.Error, match="sign in with Hugging Face first"):
        app_module.push_to_hub("dcgan", "tester/anon", False, fake_hub.token, A, None)  # the token box is ignored
    assert fake_hub.requests == [] and "tester/anon" not in fake_hub.repos
    local = str(app_module.weights_dir() / "dcgan")
    with pytest.raises(gr.Error, match="one of your runs or a Hub repo id"):
        app_module.source_folder(local, "k")  # no server paths on a Space
    token = gr.OAuthToken(token=fake_hub.token, scope="write-repos", expires_at=int(time.time()) + 60)
    assert "Pushed dcgan" in app_module.push_to_hub("dcgan", "tester/signed-in", False, "", A, None, token)
    assert "tester/signed-in" in fake_hub.repos
    monkeypatch.delenv("SYSTEM")
    assert app_module.source_folder(local, "k")[0] == Path(local).resolve()  # locally, any run folder


def test_push_and_pull_locally_leave_the_pushed_folder_untouched(client, fake_hub, app_module, capsys):
    folder = app_module.weights_dir() / "dcgan"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    msg = client.predict("dcgan", "tester/app-dcgan", False, fake_hub.token, A, api_name="/push")
    assert msg.startswith("Pushed dcgan to [tester/app-dcgan]") and fake_hub.token not in msg
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    status, grid = client.predict("tester/app-dcgan", "", api_name="/pull")
    assert "Pulled **tester/app-dcgan**" in status and "/" not in status.split("**")[-1].split("`")[0]
    assert Image.open(grid).format == "PNG"
    assert "refused the token" in error_of(
        lambda: client.predict("dcgan", "tester/other", False, "hf_notTheRightToken123", A, api_name="/push"))
    out = capsys.readouterr()
    assert fake_hub.token not in out.out + out.err
