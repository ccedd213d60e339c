"""Real-browser tests: Debian's chromium driven by Playwright opens the app, samples, trains, reloads."""

import shutil
import socket
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM),
                                reason="Debian's chromium is not installed (scripts/install.sh --test installs it)")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    import app

    app.RUNS = tmp_path_factory.mktemp("app-runs")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.demo.queue().launch(prevent_thread_lock=True, server_port=port, server_name="127.0.0.1", quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = browser.new_context(viewport={"width": 1280, "height": 1400}).new_page()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            yield page
            browser.close()
    finally:
        app.demo.close()


def test_sample_in_a_real_browser(page):
    page.get_by_role("button", name="Sample", exact=True).click()
    img = page.locator("#sample-output img").first
    img.wait_for(state="visible", timeout=60_000)
    page.wait_for_function("() => { const i = document.querySelector('#sample-output img'); return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
    assert img.evaluate("i => i.naturalWidth") > 100
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-sample.png"), full_page=True)


def test_a_reload_keeps_the_run_to_resume(page):
    """Train two steps, reload the page: the run folder comes back from the browser's storage, ready to resume."""
    page.get_by_role("tab", name="Train").click()
    page.get_by_label("steps (total target)").fill("2")
    page.get_by_label("max images (0 = all)").fill("128")
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text("finished:").wait_for(timeout=120_000)
    box = page.locator("#train-run-dir textarea")
    run_dir = box.input_value()
    assert Path(run_dir, "checkpoint", "training.safetensors").is_file()
    page.reload(wait_until="networkidle")
    page.get_by_role("tab", name="Train").click()
    page.wait_for_function("v => document.querySelector('#train-run-dir textarea').value === v", arg=run_dir, timeout=30_000)
    assert box.input_value() == run_dir
    page.get_by_label("steps (total target)").fill("3")
    page.get_by_label("resume the run folder below").check()
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text(f"finished: {run_dir}").wait_for(timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "browser-train-resumed.png"), full_page=True)


def test_a_push_from_the_browser_stores_no_token_in_it(page, fake_hub):
    """The token box promises "never stored": not in the page's storage (Gradio's run history would keep it)."""
    page.get_by_role("tab", name="Hub").click()
    page.get_by_label("folder to push").fill("dcgan")
    page.get_by_label("repo id (user/repo)").fill("tester/browser-dcgan")
    page.get_by_label("token (only when not signed in; never stored)").fill(fake_hub.token)
    page.get_by_role("button", name="Push", exact=True).click()
    page.get_by_text("pushed:").wait_for(timeout=60_000)
    stored = page.evaluate("() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
    assert fake_hub.token not in stored and "tester/browser-dcgan" not in stored
    assert fake_hub.token not in page.content()


def test_closing_the_tab_mid_training_keeps_the_work(page):
    import json
    import time

    import app

    tab = page.context.new_page()
    tab.goto(page.url, wait_until="networkidle")
    tab.get_by_role("tab", name="Train").click()
    tab.get_by_label("steps (total target)").fill("5000")
    tab.get_by_role("button", name="Train", exact=True).click()
    tab.get_by_text("img/s").wait_for(timeout=120_000)
    run_dir = Path(tab.locator("#train-run-dir textarea").input_value())
    tab.close()
    deadline = time.time() + 30
    while any(j["running"] for j in app.JOBS.values()) and time.time() < deadline:
        time.sleep(0.2)
    meta = json.loads((run_dir / "config.json").read_text())
    assert 0 < meta["step"] < 5000 and (run_dir / "checkpoint" / "training.safetensors").is_file()
