"""One real-browser test: Debian's chromium driven by Playwright opens the app, samples, sees an image."""

import shutil
import socket
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed (scripts/install.sh --test installs it)")
def test_sample_in_a_real_browser():
    from playwright.sync_api import sync_playwright

    import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.demo.queue().launch(prevent_thread_lock=True, server_port=port, server_name="127.0.0.1", quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            page.get_by_role("button", name="Sample", exact=True).click()
            img = page.locator("#sample-output img").first
            img.wait_for(state="visible", timeout=60_000)
            page.wait_for_function("() => { const i = document.querySelector('#sample-output img'); return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
            assert img.evaluate("i => i.naturalWidth") > 100
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "browser-sample.png"), full_page=True)
            browser.close()
    finally:
        app.demo.close()
