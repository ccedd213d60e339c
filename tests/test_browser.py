"""Real-browser tests: Debian's chromium driven by Playwright, as first-time visitors on a desktop and a phone.
Each browser context is a separate visitor (its own localStorage, so its own secret and runs)."""

import shutil
import socket
import time
from dataclasses import replace
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP, PHONE = {"width": 1366, "height": 900}, {"width": 390, "height": 844}
pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM),
                                reason="Debian's chromium is not installed (scripts/install.sh --test installs it)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the app does on a Space (its trainings run in their own processes)
    import app

    app.RUNS = tmp_path_factory.mktemp("app-runs")
    limits, app.LIMITS = app.LIMITS, replace(app.LIMITS, slots=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(prevent_thread_lock=True, server_port=port, server_name="127.0.0.1", quiet=True)
    yield app, f"http://127.0.0.1:{port}/"
    app.demo.close()
    app.LIMITS = limits
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def visit(browser, url, viewport=DESKTOP):
    """A new visitor (own browser context), once the page has given them their secret."""
    page = browser.new_context(viewport=viewport).new_page()
    page.goto(url, wait_until="load", timeout=120_000)
    page.wait_for_function("() => localStorage.getItem('ganhub-visitor') !== null", timeout=120_000)
    return page


def shot(page, name, full_page=False):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)


def overlaps(a, b) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_first_visit_shows_images_without_a_click_and_labels_beside_them(server, browser, viewport):
    _, url = server
    page = visit(browser, url, viewport)
    page.wait_for_function("() => { const i = document.querySelector('#sample-output img');"
                           " return i && i.complete && i.naturalWidth > 0; }", timeout=30_000)
    img = page.locator("#sample-output img")
    assert img.evaluate("i => i.naturalWidth") >= 500  # the grid at the shown scale, a lossless PNG
    assert img.get_attribute("src").endswith(".png")
    box = img.bounding_box()
    for other in ("#sample-output [data-testid=block-label]", "#sample-output button[aria-label=Download]"):
        assert not overlaps(page.locator(other).bounding_box(), box), f"{other} covers the images"
    shot(page, f"first-visit-{viewport['width']}.png", full_page=viewport is PHONE)
    page.context.close()


def test_train_preview_and_curves_are_above_the_fold(server, browser):
    _, url = server
    page = visit(browser, url)
    page.get_by_role("tab", name="Train").click()
    for where in (page.get_by_role("button", name="Train", exact=True), page.locator("#train-preview"),
                  page.locator("#train-losses"), page.locator("#train-status"), page.locator("#quota")):
        box = where.bounding_box()
        assert box and box["y"] + box["height"] <= DESKTOP["height"], f"{where} is below the fold: {box}"
    assert page.get_by_label(".zip of images").count() == 0 or not page.get_by_label(".zip of images").is_visible()
    assert not page.locator("#upload-hint").is_visible()
    shot(page, "train-1366x900.png")
    page.get_by_label("dataset", exact=True).click()  # your own images: the upload box and what to expect
    page.get_by_role("option", name="your images (.zip)").click()
    page.locator("#upload-hint").wait_for(state="visible", timeout=30_000)
    assert "train dcgan" in page.locator("#upload-hint").inner_text()
    for where in (page.locator("#upload-hint"), page.get_by_role("button", name="Train", exact=True),
                  page.locator("#train-status")):
        box = where.bounding_box()
        assert box and box["y"] + box["height"] <= DESKTOP["height"], f"{where} is below the fold: {box}"
    shot(page, "train-upload-1366x900.png")
    page.context.close()


def start_training(page, steps: int):
    page.get_by_role("tab", name="Train").click()
    page.get_by_label("steps", exact=True).fill(str(steps))
    page.get_by_text("Advanced").click()
    box = page.locator("#max-images input")
    for _ in range(20):  # the accordion renders its content once opened: fill until the box keeps the value
        box.fill("128")
        box.press("Tab")
        page.wait_for_timeout(300)
        if box.input_value() == "128":
            break
    assert box.input_value() == "128"
    page.get_by_role("button", name="Train", exact=True).click()


def status(page) -> str:
    return page.locator("#train-status").inner_text()


def test_two_visitors_train_at_once_a_third_waits_and_can_leave_and_runs_come_back(server, browser):
    import json

    app, url = server
    a, b, c = (visit(browser, url) for _ in range(3))
    start_training(a, 2000)
    start_training(b, 2000)
    for page in (a, b):
        page.wait_for_function("() => /Step \\d+/.test(document.querySelector('#train-status').innerText)",
                               timeout=120_000)
    run_a, run_b = (p.locator("input[aria-label='run']").input_value() for p in (a, b))
    assert run_a != run_b and run_a.startswith("dcgan-") and run_b.startswith("dcgan-")
    shot(a, "train-visitor-a.png")
    start_training(c, 10)
    c.get_by_text("you are number 1 in line").wait_for(timeout=60_000)
    assert "runs 2 at once" in status(c) and "Stop" in status(c)
    shot(c, "train-visitor-c-waiting.png")
    assert len(app.LINE.running) == 2 and len(app.LINE.waiting) == 1
    c.get_by_role("button", name="Stop", exact=True).click()
    c.get_by_text("You left the line").wait_for(timeout=30_000)
    assert "Step" in status(a) and "Step" in status(b)  # both still training, each showing its own progress
    assert len({j.key for j in app.LINE.running}) == 2  # two visitors, one training each
    a.get_by_role("button", name="Stop", exact=True).click()
    a.get_by_text("Stopped at step").wait_for(timeout=60_000)
    b.context.close()  # closing the tab stops B's training too, keeping a checkpoint
    deadline = time.time() + 60
    while app.LINE.running and time.time() < deadline:
        time.sleep(0.2)
    assert not app.LINE.running
    b_folder = next(app.RUNS.glob(f"*/{run_b}"))
    assert json.loads((b_folder / "config.json").read_text())["step"] > 0
    a.reload(wait_until="load", timeout=120_000)  # a reload: A's runs come back, never B's
    a.get_by_role("tab", name="Train").click()
    a.locator("input[aria-label='run']").click()
    a.get_by_role("option", name=run_a).wait_for(timeout=60_000)
    options = a.get_by_role("option").all_inner_texts()
    assert run_a in options and run_b not in " ".join(options)
    c.context.close()
    a.context.close()


def test_a_push_from_the_browser_stores_no_token_in_it(server, browser, fake_hub):
    """The token box promises "never stored": not in the page's storage (Gradio's run history would keep it)."""
    _, url = server
    page = visit(browser, url)
    page.get_by_role("tab", name="Hub").click()
    page.get_by_label("repo id", exact=True).fill("tester/browser-dcgan")
    page.get_by_label("token (never stored)").fill(fake_hub.token)
    page.get_by_role("button", name="Push", exact=True).click()
    page.get_by_text("Pushed").wait_for(timeout=60_000)
    stored = page.evaluate("() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
    assert fake_hub.token not in stored and "tester/browser-dcgan" not in stored
    assert fake_hub.token not in page.content()
    page.context.close()
