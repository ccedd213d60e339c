"""The app as a Hugging Face Space runs it: `python app.py` in a subprocess with a Space's environment
(SYSTEM=spaces, SPACE_ID, the OAuth variables Spaces set when the front matter says `hf_oauth: true`),
a valid token of the Space owner in HF_TOKEN, and a fake Hub."""

import base64
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import gradio
import pytest
from gradio_client import Client

from tests.fakehub import TOKEN, FakeHub

ROOT = Path(__file__).resolve().parent.parent
VISITOR = uuid.uuid4().hex
OAUTH_SECRET = "fake-oauth-secret"


def front_matter() -> dict[str, str]:
    block = ROOT.joinpath("README.md").read_text().split("---\n")[1]
    return {k.strip(): v.split("#")[0].strip().strip('"') for k, _, v in
            (line.partition(":") for line in block.splitlines() if ":" in line and not line.startswith(" "))}


def test_the_front_matter_pins_what_the_tests_run():
    meta = front_matter()
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["hf_oauth"] == "true"
    assert meta["sdk_version"] == gradio.__version__
    assert meta["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    pins = [ln.split("#")[0].strip() for ln in ROOT.joinpath("requirements.txt").read_text().splitlines()]
    assert f"gradio[oauth,mcp]=={gradio.__version__}" in pins  # a Space installs the same Gradio, with its extras


def snapshot(*roots: Path) -> dict[str, tuple[float, int]]:
    return {str(p): (p.stat().st_mtime, p.stat().st_size) for r in roots for p in r.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)}


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """`python app.py` as a Space starts it; yields (url, hub, folders)."""
    root = tmp_path_factory.mktemp("space")
    dirs = {name: root / name for name in ("cwd", "tmp", "home", "cache")}
    for d in dirs.values():
        d.mkdir()
    hub = FakeHub()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "GANHUB_", "HF_", "SPACE"))}
    env.update(SYSTEM="spaces", SPACE_ID="tester/ganhub", SPACE_HOST="tester-ganhub.hf.space",
               OAUTH_CLIENT_ID="fake-client-id", OAUTH_CLIENT_SECRET=OAUTH_SECRET,
               OAUTH_SCOPES="openid profile write-repos manage-repos",
               OPENID_PROVIDER_URL="http://127.0.0.1:9",  # only contacted when a visitor clicks "Sign in"
               HF_TOKEN=TOKEN,  # the Space owner's token, valid on the (fake) Hub: it must never be used
               HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(dirs["cache"] / "hf"),
               GANHUB_CACHE=str(dirs["cache"] / "ganhub"), TMPDIR=str(dirs["tmp"]), HOME=str(dirs["home"]),
               GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               PYTHONPATH=str(ROOT))
    before = snapshot(ROOT / "weights")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=dirs["cwd"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=5)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise AssertionError("the Space did not start:\n" + proc.stdout.read()[-3000:]) from None
            time.sleep(0.5)
    yield url, hub, dirs, before
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    hub.close()


def get(url: str) -> bytes:
    return urllib.request.urlopen(url, timeout=30).read()


def test_the_space_offers_hugging_face_sign_in(space):
    url, *_ = space
    config = json.loads(get(url + "config"))
    buttons = [c["props"]["value"] for c in config["components"] if c["type"] == "button"]
    assert "Sign in with Hugging Face" in buttons  # gr.LoginButton (a button whose click goes to /login/huggingface)
    page = json.dumps(config)
    assert "This Space allows up to 2,000 steps or 10 minutes per run" in page  # the quotas are shown
    token_boxes = [c for c in config["components"] if c["props"].get("label") == "token (never stored)"]
    assert token_boxes and token_boxes[0]["props"]["visible"] is False  # no token box on a Space


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed")
def test_a_visitor_sees_the_sign_in_button_and_the_quotas_in_a_browser(space):
    from playwright.sync_api import sync_playwright

    url, *_ = space
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url, wait_until="networkidle", timeout=120_000)
        page.get_by_role("tab", name="Hub").click()
        button = page.get_by_role("button", name="Sign in with Hugging Face")
        button.wait_for(timeout=30_000)
        assert button.is_visible() and page.get_by_label("token (never stored)").count() == 0
        page.get_by_role("tab", name="Train").click()
        assert page.get_by_text("This Space allows up to 2,000 steps").is_visible()
        assert not errors, errors
        browser.close()


def test_the_mcp_server_lists_every_tool_with_a_description(space):
    url, *_ = space
    # on a Space, Gradio prefixes each tool with the Space's name
    tools = {t["name"].removeprefix("ganhub_"): t for t in json.loads(get(url + "gradio_api/mcp/schema"))}
    assert {"sample_images", "interpolate_seeds", "mix_styles", "describe_model", "train_gan", "stop_training",
            "download_run", "evaluate_models", "push_to_hub", "pull_from_hub", "list_plugins"} <= set(tools)
    for name, tool in tools.items():
        assert len(tool["description"]) > 30, name
        for param, schema in tool["inputSchema"]["properties"].items():
            assert schema.get("description"), f"{name}({param}) has no description"
    assert "enum" not in tools["sample_images"]["inputSchema"]["properties"]["source"]  # repo ids are welcome too


def test_an_anonymous_push_is_refused_even_with_the_owners_token_on_the_server(space):
    url, hub, *_ = space
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="sign in with Hugging Face first"):
        client.predict("dcgan", "tester/anonymous", False, TOKEN, VISITOR, api_name="/push")  # even with a token typed
    assert "tester/anonymous" not in hub.repos and not any("/api/repos/create" in r for r in hub.requests)


def session_cookie(session: dict) -> str:
    """What Gradio's SessionMiddleware (starlette, itsdangerous.TimestampSigner with its defaults) accepts:
    base64(json) . base64(timestamp) . base64(HMAC-SHA1), the key derived as sha1(salt + "signer" + secret)."""
    secret = hashlib.sha256((OAUTH_SECRET + "-v4").encode()).hexdigest()

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    key = hashlib.sha1(b"itsdangerous.Signer" + b"signer" + secret.encode()).digest()
    value = base64.b64encode(json.dumps(session).encode()) + b"." + b64(int(time.time()).to_bytes(4, "big"))
    return (value + b"." + b64(hmac.new(key, value, hashlib.sha1).digest())).decode()


def test_a_signed_in_visitor_pushes_to_their_own_account(space):
    url, hub, *_ = space
    info = {"access_token": TOKEN, "scope": "openid profile write-repos manage-repos",
            "expires_at": int(time.time()) + 3600,
            "userinfo": {"name": "Tester", "preferred_username": "tester", "profile": "https://huggingface.co/tester",
                         "picture": ""}}
    client = Client(url, verbose=False, headers={"Cookie": f"session={session_cookie({'oauth_info': info})}"})
    msg = client.predict("dcgan", "", False, "", VISITOR, api_name="/push")  # empty repo id: <username>/<model>
    assert msg.startswith("Pushed dcgan to [tester/dcgan]") and "tester/dcgan" in hub.repos


def test_sources_on_a_space_are_bundled_hub_or_the_visitors_own(space):
    url, *_ = space
    client = Client(url, verbose=False)
    for source in (str(ROOT / "weights" / "dcgan"), "/etc", "run:../../weights"):
        with pytest.raises(Exception, match="is not a bundled model|choose one of your runs|not found"):
            client.predict(source, 0, 4, 1.0, -1, VISITOR, api_name="/sample")


def test_a_training_writes_only_into_the_runs_folder(space):
    url, hub, dirs, before = space
    client = Client(url, verbose=False)
    tiny = '{"g_width": 8, "d_width": 8, "batch_size": 8}'
    final = client.predict("dcgan", "fashion-mnist", None, 3, "", tiny, 16, "fp32", False, VISITOR, api_name="/train")
    assert "trained 3 steps" in final[2]
    run = final[3]["value"]
    assert re.fullmatch(r"dcgan-[0-9a-f]{8}", run)
    made = [p.relative_to(dirs["cwd"]) for p in dirs["cwd"].rglob("*") if p.is_file()]
    assert made and all(p.parts[:2] == ("runs", "app") and p.parts[3] == run for p in made), made
    assert list(dirs["home"].rglob("*")) == []  # nothing in the home folder (caches went where they were told)
    client.predict("dcgan", 0, 4, 1.0, -1, VISITOR, api_name="/sample")
    assert snapshot(ROOT / "weights") == before  # the bundled weights untouched
