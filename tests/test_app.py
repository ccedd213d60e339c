"""Drive the app the way gradio tests itself: launch it, then call every api_name through gradio_client."""

import socket
import time

import pytest
from gradio_client import Client
from PIL import Image

from ganhub import registry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    import os

    os.environ["GANHUB_RUNS_DIR"] = str(tmp_path_factory.mktemp("runs"))
    import app

    app.RUNS = tmp_path_factory.mktemp("app-runs")
    port = free_port()
    app.demo.queue().launch(prevent_thread_lock=True, server_port=port, server_name="127.0.0.1", quiet=True)
    yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    app.demo.close()


def test_plugins_lists_the_five(client):
    variants, failures = client.predict(api_name="/plugins")
    names = {row[0] for row in variants["data"]}
    assert {"vanilla", "dcgan", "wgan-gp", "sngan", "stylegan-lite"} <= names
    caps = {row[0]: row[5] for row in variants["data"]}
    assert caps["stylegan-lite"] == "mapping" and caps["dcgan"] == "-"


def test_sample_returns_an_image_of_the_right_size(client):
    shown, png = client.predict("dcgan", 0, 16, 1.0, api_name="/sample")
    grid = Image.open(png)
    assert png.endswith("dcgan-seed0-n16.png")  # downloads are named after what they hold
    assert grid.size == (4 * 34 + 2, 4 * 34 + 2)  # 16 samples of 32 px in a 4x4 grid
    assert Image.open(shown).size == (grid.width * 3, grid.height * 3)
    again = client.predict("dcgan", 0, 16, 1.0, api_name="/sample")[1]
    assert Image.open(again).tobytes() == grid.tobytes()  # same seed, same images


def test_interpolate_returns_the_requested_frames(client):
    frames, gif = client.predict("dcgan", 3, 4, "slerp", 7, api_name="/interpolate")
    assert len(frames) == 7 and Image.open(gif).format == "GIF" and gif.endswith("dcgan-slerp-seed3-to-4.gif")


def test_first_visitors_see_the_best_bundled_model():
    import json

    import app
    from ganhub.source import bundled, weights_dir

    fids = {n: json.loads((weights_dir() / n / "config.json").read_text())["metrics"]["fid"]["value"] for n in bundled()}
    assert app.DEFAULT == min(fids, key=fids.get)


def test_style_mix_and_its_refusal(client):
    grid = client.predict("stylegan-lite", "1,2", "3,4,5", 3, api_name="/style_mix")
    assert Image.open(grid).size == (3 * (4 * 34 + 2), 3 * (3 * 34 + 2))  # (1 + 3 columns) x (1 + 2 rows) tiles, x3
    with pytest.raises(Exception, match="no mapping network"):
        client.predict("dcgan", "1", "2", 3, api_name="/style_mix")


def test_the_crossover_slider_offers_only_the_generators_layers():
    import app
    from ganhub.source import load_generator

    top = load_generator("stylegan-lite").G.num_ws - 1
    slider = app.crossover_slider("stylegan-lite", 9)
    assert (slider.maximum, slider.value) == (top, top)
    assert app.crossover_slider("stylegan-lite", 2).value == 2
    assert app.crossover_slider("no-such-model", 3).value == 3  # Mix then says what is wrong


def test_bad_input_is_a_sentence_not_a_traceback(client):
    with pytest.raises(Exception) as exc:
        client.predict("no-such-model", 0, 4, 1.0, api_name="/sample")
    assert "is not a run folder, a bundled weights name" in str(exc.value) and "Traceback" not in str(exc.value)
    with pytest.raises(Exception, match="greater than maximum value 64"):  # the slider bound, checked by gradio
        client.predict("dcgan", 0, 1000, 1.0, api_name="/sample")


def test_train_streams_stops_and_resumes(client, tmp_path):
    import json
    import shlex

    import torch
    from safetensors.torch import load_file

    from ganhub.cli import main

    cfg = json.dumps(registry.get("dcgan").test_config)
    job = client.submit("dcgan", "fashion-mnist", None, cfg, 400, 64, False, "", api_name="/train")
    deadline = time.time() + 120
    while len(job.outputs()) < 3 and time.time() < deadline:
        time.sleep(0.2)
    assert len(job.outputs()) >= 3, "training did not stream updates"
    assert "step" in job.outputs()[-1][2]
    other_tab = Client(client.src, verbose=False)  # a reload is a new session: it stops the run named in the box
    assert "no training is running" in other_tab.predict("", api_name="/stop")
    assert "stopping" in other_tab.predict(job.outputs()[-1][3], api_name="/stop")
    while not job.done() and time.time() < deadline:
        time.sleep(0.2)
    last = job.outputs()[-1]
    assert "stopped at step" in last[2]
    run_dir = last[3]
    stopped_at = int(last[2].split("stopped at step ")[1].split(";")[0])
    assert stopped_at < 400
    # resume names the folder (a reload keeps it in the browser), whatever variant the dropdown shows now
    final = client.predict("sngan", "fashion-mnist", None, cfg, stopped_at + 3, 64, True, run_dir, api_name="/train")
    assert f"finished: {run_dir}" in final[2] and final[3] == final[4] == run_dir
    meta = json.loads(open(f"{run_dir}/config.json").read())
    assert meta["step"] == stopped_at + 3
    # the recorded command is the CLI equivalent of the app run (stopped and resumed), and reproduces it exactly
    argv = shlex.split(meta["recipe"]["command"])
    assert argv[:9] == ["ganhub", "train", "dcgan", "--dataset", "fashion-mnist", "--steps", str(stopped_at + 3), "--seed", "0"]
    assert "--limit" in argv and "--set" in argv
    argv[argv.index("--out") + 1] = str(tmp_path / "cli")
    assert main([*argv[1:], "--quiet"]) == 0
    ours, theirs = load_file(f"{run_dir}/model.safetensors"), load_file(tmp_path / "cli" / "model.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    zipped = client.predict(run_dir, api_name="/download")
    assert zipped.endswith(".zip")


@pytest.mark.parametrize("folder", ["", "/", "/etc", "{runs}/../.."])
def test_resume_and_download_touch_only_the_apps_own_runs(client, folder):
    import app

    folder = folder.format(runs=app.RUNS)
    with pytest.raises(Exception, match="nothing to download"):
        client.predict(folder, api_name="/download")
    with pytest.raises(Exception, match="nothing to resume"):
        client.predict("dcgan", "fashion-mnist", None, "{}", 10, 64, True, folder, api_name="/train")


def test_evaluate_side_by_side_with_protocol(client):
    table, protocol = client.predict(["dcgan", "stylegan-lite"], "", ["fid", "coverage"], 200, api_name="/evaluate")
    assert [row[0] for row in table["data"]] == ["dcgan", "stylegan-lite"]
    assert "fid" in table["headers"] and "n_generated=200" in protocol and "fmnist" in protocol


def test_push_and_pull_through_the_app(client, fake_hub, capsys):
    """Locally the token comes from the token box (on Spaces, from gr.LoginButton's OAuth token)."""
    msg = client.predict("dcgan", "tester/app-dcgan", False, fake_hub.token, api_name="/push")
    assert msg.startswith("pushed:") and fake_hub.token not in msg
    status, grid = client.predict("tester/app-dcgan", "", api_name="/pull")
    assert status.startswith("pulled to") and Image.open(grid).width > 0
    with pytest.raises(Exception, match="refused the token"):
        client.predict("dcgan", "tester/other", False, "hf_notTheRightToken123", api_name="/push")
    out = capsys.readouterr()
    assert fake_hub.token not in out.out + out.err
