"""ganhub's Gradio app: sample, interpolate, style-mix, train, evaluate, push/pull, plugins.

Built only from the registry and ganhub's public API: a newly installed plugin appears with no change here.
`python app.py` serves it the way a Hugging Face Space does, with an MCP server: every action has a stable
api_name and a description, for gradio_client, scripts and agents (GRADIO_SERVER_NAME / _PORT honoured).

On a Space (decided as Gradio decides it: SYSTEM=spaces) the app is public, so
- Hub writes use only the signed-in visitor's OAuth token, never the Space's own token;
- models come only from the bundled weights, Hub repo ids and the visitor's own runs (no server paths);
- each visitor is a random secret kept in their browser (gr.BrowserState); their runs live in a folder
  named after its hash, so no visitor can name another's; quotas apply per visitor (shown in the page);
- at most LIMITS.slots trainings run at once, each in its own process; the others wait in line, told
  their place, and can leave it.
Nothing is written outside the runs folder and the temp folder (and the Hub / dataset caches).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import inspect
import io
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache, wraps
from pathlib import Path

import gradio as gr
import pandas as pd
from gradio.utils import get_space
from PIL import Image, ImageDraw, ImageFont


def on_space() -> bool:
    """Whether this is a Hugging Face Space, decided exactly as Gradio decides it (OAuth routes, API, PWA)."""
    return get_space() is not None


# The bundled weights sit next to this file, wherever ganhub itself was installed.
os.environ.setdefault("GANHUB_WEIGHTS_DIR", str(Path(__file__).resolve().parent / "weights"))
# Gradio's run history keeps every call's inputs in the browser (the token box, the visitor secret): off.
os.environ.setdefault("GRADIO_RUN_HISTORY", "false")
if on_space():  # the app never acts with the Space's own account: only a signed-in visitor's token is used
    os.environ.pop("HF_TOKEN", None)
    os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
    import torch

    # The server's own work (sampling, previews) is small; trainings run in their own processes. One thread
    # keeps it quick while they do: two threads competing with them made a style mix 50x slower.
    torch.set_num_threads(1)

from ganhub import registry  # noqa: E402  (after the environment above is set)
from ganhub.augment import AUGMENT_AUTO_BELOW  # noqa: E402
from ganhub.errors import GanhubError  # noqa: E402
from ganhub.hub import LOWER_IS_BETTER, metric_label  # noqa: E402
from ganhub.precision import PRECISIONS  # noqa: E402
from ganhub.run import CONFIG, MODEL, RunFolder, describe_compute  # noqa: E402
from ganhub.sample import gif_bytes, interpolate, sample, style_mix, to_grid  # noqa: E402
from ganhub.source import bundled, load_generator, weights_dir  # noqa: E402
from ganhub.variant import capabilities, config_to_dict, make_config, supports_classes  # noqa: E402

log = logging.getLogger("ganhub.app")
RUNS = Path(os.environ.get("GANHUB_RUNS_DIR", "runs/app")).resolve()
OUT = Path(tempfile.mkdtemp(prefix="ganhub-app-"))  # downloads and shown images; nothing else is written
MAX_SAMPLES, MAX_FRAMES, MAX_EVAL_SOURCES, MAX_SEED = 64, 32, 6, 2**31 - 1
SHOWN_WIDTH = 640  # small images are enlarged (nearest neighbour) to about this width, for display and download


@dataclass(frozen=True)
class Limits:
    """What one press of Train may use. Space defaults suit the free 2-vCPU hardware; GANHUB_* overrides."""

    steps: int  # steps trained per press of Train
    minutes: float  # wall-clock minutes per press of Train (0 = no limit)
    runs_per_hour: int  # trainings started per visitor per hour (0 = no limit)
    slots: int  # trainings running at once, for everyone
    waiting: int  # visitors who may wait in line for a slot

    @classmethod
    def from_env(cls) -> Limits:
        space = on_space()

        def get(name: str, on_space_: float, locally: float) -> float:
            return float(os.environ.get(f"GANHUB_{name}", on_space_ if space else locally))

        return cls(steps=int(get("MAX_STEPS", 2000, 20_000)), minutes=get("MAX_MINUTES", 10, 0),
                   runs_per_hour=int(get("RUNS_PER_HOUR", 6, 0)), slots=max(1, int(get("TRAIN_SLOTS", 2, 2))),
                   waiting=int(get("MAX_WAITING", 8, 8)))

    def text(self) -> str:
        parts = [f"up to {self.steps:,} steps" + (f" or {self.minutes:g} minutes" if self.minutes else "") + " per run"]
        if self.runs_per_hour:
            parts.append(f"{self.runs_per_hour} runs per visitor per hour")
        parts.append(f"{self.slots} trainings at once (others wait in line)")
        return ("This Space allows " if on_space() else "Limits here: ") + ", ".join(parts) + "."


LIMITS = Limits.from_env()


# ---------------------------------------------------------------------------------------------------------
# Messages: sentences for visitors, never tracebacks, CLI flags or server paths

FLAGS = {"--resume": "Train (with your run chosen)", "--steps": "steps", "--limit": "max images", "--seed": "seed",
         "--n": "count", "--token": "the Hugging Face sign-in", "--out": "a new run", "--dataset": "dataset",
         "--truncation": "ψ", "--revision": "user/repo@revision", "--precision": "precision"}


def web(msg: str) -> str:
    """A library message in the page's words: run folders by their run name, no other server path, no flags."""
    msg = re.sub(re.escape(str(RUNS)) + r"/[0-9a-f]+/([\w.-]+)", r"your run \1", msg)
    msg = msg.replace(str(weights_dir()) + "/", "bundled ").replace(str(OUT), "a download")
    msg = re.sub(r"(?<![\w.:/])/(?:[\w.~-]+/)+([\w.~-]+)", r"\1", msg)  # any other absolute path (not a URL): its name
    msg = re.sub(r"`?--set (\w+)=[^\s`;,)]*`?", r"\1 (Advanced → config)", msg)
    msg = re.sub(r"`?(--[a-z-]+)`?", lambda m: FLAGS.get(m.group(1), m.group(1).lstrip("-")), msg)
    msg = re.sub(r"log in with `hf auth login`, set HF_TOKEN or pass [^;.]*", "sign in with Hugging Face", msg)
    return msg.replace("`", "")


def user_errors(fn):
    """GanhubError -> gr.Error in the page's words; anything else -> a short sentence (details in the log)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
            if inspect.isgenerator(result):
                yield from result
            else:
                yield result
        except gr.Error:
            raise
        except GanhubError as e:
            raise gr.Error(web(str(e))) from None
        except Exception:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error("Something went wrong on the server; please try again, or with other settings "
                           "(the error was logged).") from None

    return wrapper


def plain(fn):
    """user_errors for non-streaming handlers (returns the single value)."""
    gen = user_errors(fn)

    @wraps(fn)
    def wrapper(*args, **kwargs):
        return next(gen(*args, **kwargs))

    return wrapper


def whole(value, what: str, lo: int, hi: int) -> int:
    """A whole number from a box that may be empty, fractional or out of range -> int, or a friendly error."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{what} is empty; enter a whole number from {lo:,} to {hi:,}") from None
    if number != number or not number.is_integer() or not lo <= number <= hi:
        raise gr.Error(f"{what} must be a whole number from {lo:,} to {hi:,}, got {value}")
    return int(number)


def seeds_of(text: str, what: str) -> list[int]:
    try:
        seeds = [int(s) for s in str(text or "").replace(",", " ").split()]
    except ValueError:
        raise gr.Error(f"{what} must be whole numbers separated by commas, got {text!r}") from None
    if not 1 <= len(seeds) <= 8 or not all(0 <= s <= MAX_SEED for s in seeds):
        raise gr.Error(f"{what}: give 1 to 8 seeds, each from 0 to {MAX_SEED:,}")
    return seeds


class OpenDropdown(gr.Dropdown):
    """A dropdown that also takes what is typed (a Hub repo id) or set later (a run): its API schema is a
    string, not an enum of today's choices, so scripts and agents are not told the wrong values."""

    schema = {"type": "string"}

    def api_info(self) -> dict:
        return dict(self.schema)

    @classmethod
    def get_block_name(cls) -> str:
        return "dropdown"


class ClassDropdown(OpenDropdown):
    schema = {"type": "integer", "description": "class number, -1 for random classes, -2 for one row per class"}


# ---------------------------------------------------------------------------------------------------------
# Visitors, their runs, and the sources they may use

SECRET = re.compile(r"[0-9a-f]{32}")
UPLOADS = "uploads"  # the visitor's kept .zip uploads, in their folder beside their runs
RUN_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,79}")
REPO = re.compile(r"[\w.-]+/[\w.-]+(@[\w./-]+)?")


def visitor_key(secret: str | None, request: gr.Request | None) -> str:
    """The visitor's folder name: a hash of the secret their browser keeps (else of this session)."""
    s = str(secret or "")
    if not SECRET.fullmatch(s):
        s = "session:" + (getattr(request, "session_hash", None) or "none")
    return hashlib.sha256(s.encode()).hexdigest()[:24]


def my_runs(key: str) -> list[str]:
    """The visitor's run names, newest first."""
    root = RUNS / key
    runs = [p for p in root.iterdir() if (p / CONFIG).is_file()] if root.is_dir() else []
    return [p.name for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]


def my_run(key: str, name: str, what: str) -> Path:
    name = str(name or "").strip()
    out = RUNS / key / name
    if not RUN_NAME.fullmatch(name) or not (out / CONFIG).is_file():
        raise gr.Error(f"choose one of your runs to {what}" + (f"; {name!r} is not one of them" if name else ""))
    return out


def source_choices(key: str) -> list[tuple[str, str]]:
    return [(n, n) for n in bundled()] + [(f"your run {n}", f"run:{n}") for n in my_runs(key)]


def source_folder(source: str, key: str) -> tuple[Path, str]:
    """A source a visitor may use -> (local folder, name to show). On a Space: bundled weights, Hub repo ids
    (downloaded to the Hub cache) and the visitor's own runs; locally also any run folder on this computer."""
    from ganhub.hub import resolve_source

    s = str(source or "").strip()
    if not s:
        raise gr.Error("choose a model first: a bundled one, one of your runs or a Hub repo id user/repo")
    if s in bundled():
        return weights_dir() / s, s
    if s.startswith("run:"):
        return my_run(key, s[4:], "use"), f"your run {s[4:]}"
    if not on_space() and (Path(s).expanduser() / CONFIG).is_file():
        return Path(s).expanduser().resolve(), Path(s).name
    if REPO.fullmatch(s):
        return resolve_source(s), s
    names = ", ".join(bundled()) or "none"
    where = "" if on_space() else ", a run folder on this computer"
    raise gr.Error(f"{s!r} is not a bundled model ({names}), one of your runs{where} or a Hub repo id user/repo")


@lru_cache(maxsize=8)
def _loaded(path: str, stamp: float):
    return load_generator(Path(path))


def load(folder: Path):
    """The folder's generator, cached until its weights change (a run that trained further)."""
    model = folder / MODEL
    return _loaded(str(folder), model.stat().st_mtime if model.is_file() else 0.0)


# ---------------------------------------------------------------------------------------------------------
# Images: lossless PNG, enlarged to the shown size; the download is exactly what is shown


def enlarged(img: Image.Image) -> Image.Image:
    s = max(1, min(8, SHOWN_WIDTH // max(img.width, 1)))
    return img.resize((img.width * s, img.height * s), Image.NEAREST) if s > 1 else img


def save(data: Image.Image | bytes, name: str) -> str:
    """Write a download under a readable name (one fresh folder per request, so names never clash)."""
    path = OUT / uuid.uuid4().hex / "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    path.parent.mkdir()
    data.save(path, format="PNG") if isinstance(data, Image.Image) else path.write_bytes(data)
    return str(path)


def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def labelled_mix(grid: Image.Image, rows: list[int], cols: list[int], crossover: int, num_ws: int) -> Image.Image:
    """Karras et al.'s style-mixing figure with its labels: the seed over each column and beside each row."""
    grid = enlarged(grid)
    tile_w, tile_h = grid.width / (len(cols) + 1), grid.height / (len(rows) + 1)
    size = max(12, min(18, int(tile_w / 6)))
    f = font(size)
    top, left = size * 2 + 16, size * 4 + 8
    canvas = Image.new("RGB", (grid.width + left, grid.height + top), "white")
    canvas.paste(grid.convert("RGB"), (left, top))
    d = ImageDraw.Draw(canvas)
    d.text((left + tile_w * 1.05, 4), f"fine styles (layers {crossover + 1}-{num_ws}) from seed:", fill="black", font=f)
    for j, c in enumerate(cols):
        d.text((left + tile_w * (j + 1.5), top - 4), str(c), fill="black", font=f, anchor="md")
    d.multiline_text((left + tile_w / 2, top + tile_h / 2),
                     f"rows: coarse\nstyles (layers\n1-{crossover}) from\nthe seed at left", fill="black",
                     font=font(max(11, size - 4)), anchor="mm", align="center")
    for i, r in enumerate(rows):
        d.text((left - 6, top + tile_h * (i + 1.5)), f"seed {r}", fill="black", font=f, anchor="rm")
    return canvas


# ---------------------------------------------------------------------------------------------------------
# Sample, interpolate, style-mix, describe_model


ROWS_PER_CLASS = -2  # the class picker's "one row per class"


def sample_png(folder: Path, name: str, seed: int, n: int, psi: float, label: int | None) -> str:
    """label: None = random classes (or unconditional), a class number, or ROWS_PER_CLASS."""
    from ganhub.sample import class_grid

    G = load(folder).G
    psi = psi if "mapping" in capabilities(G) else 1.0
    if label is not None and "classes" not in capabilities(G):
        raise gr.Error(f"{name} is unconditional (it has no classes); leave the class at -1 (any)")
    if label == ROWS_PER_CLASS:
        grid = enlarged(class_grid(G, max(1, min(12, n // G.num_classes)), seed, truncation=psi))
    else:
        grid = enlarged(to_grid(sample(G, n, seed, truncation=psi, labels=label)))
    tag = "" if label is None else "-per-class" if label == ROWS_PER_CLASS else f"-class{label}"
    return save(grid, f"{Path(name).name.replace('your run ', '')}-seed{seed}-n{n}{tag}.png")


@plain
def sample_images(source: str, seed: float, count: float, truncation: float, label, visitor: str,
              request: gr.Request):
    """Generate a grid of images from a GAN: a bundled model, one of your runs, or a Hub repo id.

    Args:
        source: bundled model name (e.g. "stylegan-lite"), "run:<name>" for one of your runs, or a Hub repo id "user/repo".
        seed: whole number; the same seed gives the same images.
        count: how many images, 1 to 64.
        truncation: ψ from 0 to 1 for generators with a mapping network (1 = off; lower = more typical, less varied).
        label: class number for a conditional generator, -1 for random classes, -2 for one row per class.
        visitor: your private visitor id (32 hex characters) under which your runs are kept.
    Returns:
        samples: the grid as a lossless PNG, enlarged to about 640 px wide.
    """
    key = visitor_key(visitor, request)
    seed, n = whole(seed, "seed", 0, MAX_SEED), whole(count, "count", 1, MAX_SAMPLES)
    folder, name = source_folder(source, key)
    k = None if label in (None, "", -1, "-1") else whole(label, "class", ROWS_PER_CLASS, 9999)
    if k == -1:
        k = None
    return sample_png(folder, name, seed, n, float(truncation if truncation is not None else 1.0), k)


def random_seed() -> int:
    return random.randint(0, 99_999)


@plain
def interpolate_seeds(source: str, seed_a: float, seed_b: float, path: str, frames: float, visitor: str,
                   request: gr.Request):
    """Walk the latent space between two seeds: an animated GIF and a strip of its frames.

    Args:
        source: bundled model name, "run:<name>" for one of your runs, or a Hub repo id "user/repo".
        seed_a: the seed the walk starts from.
        seed_b: the seed the walk ends at.
        path: "slerp" (along the sphere, as the latents are Gaussian) or "lerp" (a straight line).
        frames: number of frames, 2 to 32.
        visitor: your private visitor id (32 hex characters).
    Returns:
        animation: animated GIF (forward then back, looping).
        frames: the frames side by side as a lossless PNG.
    """
    key = visitor_key(visitor, request)
    a, b = whole(seed_a, "seed A", 0, MAX_SEED), whole(seed_b, "seed B", 0, MAX_SEED)
    n = whole(frames, "frames", 2, MAX_FRAMES)
    if path not in ("slerp", "lerp"):
        raise gr.Error(f"path must be slerp or lerp, got {path!r}")
    folder, name = source_folder(source, key)
    x = interpolate(load(folder).G, a, b, n, path)
    if x.dim() != 4:
        raise gr.Error(f"{name} generates 2-D points, not images; interpolation needs an image model")
    base = f"{Path(name).name.replace('your run ', '')}-{path}-seed{a}-to-{b}"
    scale = max(2, min(8, 256 // x.shape[-1]))
    strip = to_grid(x, nrow=n)
    strip = strip.resize((strip.width * 2, strip.height * 2), Image.NEAREST) if strip.width < 1000 else strip
    return save(gif_bytes(x, scale=scale), base + ".gif"), save(strip, base + "-frames.png")


@lru_cache(maxsize=8)
def balanced_crossover(folder: str, stamp: float) -> int:
    """The crossover whose mixes differ about equally from both sources, over 6 x 6 seed pairs: a default
    that visibly mixes (copying neither the row nor the column image)."""
    import torch

    from ganhub.sample import latents

    G = load(Path(folder)).G
    if "mapping" not in capabilities(G) or "classes" in capabilities(G):
        return max(1, getattr(G, "num_ws", 2) // 2)

    def synth(w):
        torch.manual_seed(0)  # the same noise inputs for every batch
        return G.synthesis(w)

    with torch.no_grad():
        w = G.mapping(torch.cat([latents(1, G.z_dim, s) for s in range(12)]).to(G.w_avg.device))
        rows, cols = w[:6].repeat_interleave(6, 0), w[6:].repeat(6, 1)  # all 36 (row, column) pairs
        rows, cols = rows[:, None].repeat(1, G.num_ws, 1), cols[:, None].repeat(1, G.num_ws, 1)
        xr, xc = synth(rows), synth(cols)
        gaps = {}
        for k in range(1, G.num_ws):
            mixed = torch.cat([rows[:, :k], cols[:, k:]], 1)
            xm = synth(mixed)
            gaps[k] = abs(float((xm - xr).abs().mean()) - float((xm - xc).abs().mean()))
    return min(gaps, key=gaps.get)


def crossover_slider(source: str, visitor: str = "", request: gr.Request | None = None):
    """The crossover slider follows the generator: layers 1 .. num_ws - 1, set where mixes are balanced."""
    try:
        folder, _ = source_folder(source, visitor_key(visitor, request))
        G = load(folder).G
        top = int(G.num_ws) - 1
        stamp = (folder / MODEL).stat().st_mtime
    except (gr.Error, GanhubError, AttributeError, TypeError, ValueError, OSError):  # Mix then says what is wrong
        return gr.Slider(minimum=1, maximum=9, value=2)
    return gr.Slider(minimum=1, maximum=max(top, 1), value=min(balanced_crossover(str(folder), stamp), top))


@plain
def mix_styles(source: str, row_seeds: str, column_seeds: str, crossover: float, visitor: str,
                 request: gr.Request):
    """Style mixing (StyleGAN): each image takes its coarse styles from a row seed and its fine styles from a
    column seed. Needs a generator with a mapping network (stylegan-lite).

    Args:
        source: bundled model name, "run:<name>" for one of your runs, or a Hub repo id "user/repo".
        row_seeds: 1 to 8 seeds separated by commas; they give the coarse styles (pose, shape).
        column_seeds: 1 to 8 seeds separated by commas; they give the fine styles (texture, shading).
        crossover: the first layer whose style comes from the column seed (1 .. layers - 1).
        visitor: your private visitor id (32 hex characters).
    Returns:
        style mix: the labelled grid as a lossless PNG (first row and column: the sources themselves).
    """
    key = visitor_key(visitor, request)
    rows, cols = seeds_of(row_seeds, "row seeds"), seeds_of(column_seeds, "column seeds")
    folder, name = source_folder(source, key)
    G = load(folder).G
    if "mapping" not in capabilities(G):
        raise gr.Error(f"{name} has no mapping network, so coarse and fine styles cannot be mixed; "
                       "pick a stylegan-lite model")
    k = whole(crossover, "crossover layer", 1, G.num_ws - 1)
    grid = labelled_mix(style_mix(G, rows, cols, k), rows, cols, k, G.num_ws)
    return save(grid, f"{Path(name).name.replace('your run ', '')}-stylemix-{k}.png")


EXTRACTOR_WORDS = {"fmnist": "Fashion-MNIST classifier", "inception": "Inception-v3"}


def card_text(folder: Path, name: str) -> str:
    meta = RunFolder(folder).meta
    variant = str(meta.get("variant", "?"))
    try:
        summary = registry.get(variant).summary
    except GanhubError:
        summary = "(its plugin is not installed here)"
    recipe = meta.get("recipe") if isinstance(meta.get("recipe"), dict) else {}
    lines = [f"**{name}** · `{variant}`: {summary}"]
    trained = f"{int(meta.get('step') or 0):,} training steps"
    if recipe.get("dataset"):
        data = str(recipe["dataset"])
        trained += f" on {DATASETS[data] if data in DATASETS else Path(data).name}"
    cost = describe_compute(meta)
    if cost:
        trained += f" in {cost}"
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
    facts = [trained]
    fid = metrics.get("fid")
    if isinstance(fid, dict) and isinstance(fid.get("value"), (int, float)):
        n = (fid.get("protocol") or {}).get("n_generated")
        facts.append(f"{metric_label('fid', fid)}: **{fid['value']:.1f}** (lower is better"
                     + (f", {int(n):,} samples)" if n else ")"))
    k = (meta.get("config") or {}).get("num_classes") or 0
    if k:
        facts.append(f"conditional on {k} classes (pick one below)")
    cov = (metrics.get("coverage") or {}).get("value")
    if isinstance(cov, dict) and "classes" in cov:
        facts.append(f"{cov['classes']}/{cov.get('of', '?')} classes generated")
    return "  \n".join(lines + [" · ".join(facts)])


def describe_model(source: str, visitor: str, request: gr.Request) -> str:
    """What a model is and how good: its variant, training steps and data, FID with the extractor it used.

    Args:
        source: bundled model name, "run:<name>" for one of your runs, or a Hub repo id "user/repo".
        visitor: your private visitor id (32 hex characters).
    Returns:
        about this model: a short card in Markdown.
    """
    try:
        folder, name = source_folder(source, visitor_key(visitor, request))
        return card_text(folder, name)
    except (gr.Error, GanhubError) as e:
        return f"⚠ {web(getattr(e, 'message', None) or str(e))}"


def class_names(meta: dict) -> list[str]:
    from ganhub.data import FMNIST_CLASSES

    names = meta.get("class_names")
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    if str((meta.get("recipe") or {}).get("dataset")) == "fashion-mnist":
        return list(FMNIST_CLASSES)
    return []


def source_controls(source: str, visitor: str, request: gr.Request):
    """On a source change: its card, ψ only where a mapping network exists, a class picker where conditional."""
    card = describe_model(source, visitor, request)
    try:
        folder, _ = source_folder(source, visitor_key(visitor, request))
        loaded = load(folder)
        caps, k = capabilities(loaded.G), int(getattr(loaded.G, "num_classes", 0) or 0)
    except (gr.Error, GanhubError):
        return card, gr.Slider(visible=False), gr.Dropdown(visible=False)
    names = class_names(loaded.meta)
    choices = [("any (random classes)", -1), ("one row per class", ROWS_PER_CLASS)] + [
        (names[i] if i < len(names) else f"class {i}", i) for i in range(k)]
    return (card, gr.Slider(visible="mapping" in caps),
            gr.Dropdown(choices=choices, value=-1, visible=k > 0))


# ---------------------------------------------------------------------------------------------------------
# Training: each run in its own process, a bounded number at once, the others waiting in line


def _train_worker() -> None:
    """The child process of one training (see Job.start). Self-contained: it runs as `python -c <this
    source>`, so it imports ganhub but not this app or Gradio, and has its own RNG, threads and memory.
    stdin: the train() arguments as one JSON line, then "stop" lines (EOF = stop too). stdout: one JSON
    event per line, every logged loss row included, a preview as base64 PNG."""
    import base64
    import io
    import json
    import os
    import sys
    import threading
    import time
    import traceback

    events_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed goes to the server log, not into the event stream
    args = json.loads(sys.stdin.readline())
    threads = args.pop("threads", None)
    import torch

    if threads:
        torch.set_num_threads(threads)
    from ganhub.errors import GanhubError
    from ganhub.train import train

    stop = threading.Event()

    def watch() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()  # asked to, or the app went away: stop after this step, with a checkpoint

    threading.Thread(target=watch, daemon=True).start()

    gone = []

    def emit(**event) -> None:
        if gone:
            return
        try:
            events_out.write(json.dumps(event) + "\n")
        except OSError:  # the app went away (a closed pipe): stop after this step, with a checkpoint
            gone.append(True)
            stop.set()

    rows, last = [], 0.0
    try:
        for ev in train(**args, stop=stop):
            if ev.kind == "step":
                rows.append({"step": ev.step, **ev.losses})
                if time.time() - last < 0.25 and ev.step < ev.total:
                    continue  # at most 4 updates a second; the rows keep every point
            last = time.time()
            image = None
            if ev.image is not None:
                buf = io.BytesIO()
                ev.image.save(buf, format="PNG")
                image = base64.b64encode(buf.getvalue()).decode()
            emit(kind=ev.kind, step=ev.step, total=ev.total, ips=ev.images_per_s, elapsed=ev.elapsed, eta=ev.eta,
                 message=ev.message, image=image, rows=rows)
            rows = []
    except GanhubError as e:
        emit(kind="error", message=str(e))
    except Exception as e:  # noqa: BLE001 - reported as one line; the traceback goes to the server log
        traceback.print_exc()
        emit(kind="crash", message=type(e).__name__)


WORKER = textwrap.dedent(inspect.getsource(_train_worker)) + "\n_train_worker()\n"


@dataclass(eq=False)
class Job:
    key: str  # the visitor
    run: str  # the run's name (its folder under RUNS / key)
    state: str = "waiting"  # waiting -> running -> done
    stop_reason: str = ""  # "", "stop", "time", "left"
    proc: subprocess.Popen | None = None
    started: float = 0.0
    wake: threading.Event = field(default_factory=threading.Event)
    upload: Path | None = None  # an upload first kept for this run: removed again if the run never starts

    def start(self, args: dict) -> None:
        cwd = Path(args.pop("cwd"))
        cwd.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1, cwd=cwd)
        self.proc.stdin.write(json.dumps(args) + "\n")
        self.proc.stdin.flush()
        self.started = time.time()
        if self.stop_reason:  # Stop was pressed just as the slot came free
            self.stop(self.stop_reason)

    def stop(self, reason: str = "stop") -> None:
        self.stop_reason = self.stop_reason or reason
        self.wake.set()
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()
            except (OSError, ValueError):  # already gone
                pass


class Line:
    """At most LIMITS.slots trainings at once, one per visitor; the others wait in arrival order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting: list[Job] = []
        self.running: list[Job] = []
        self.starts: dict[str, collections.deque] = collections.defaultdict(collections.deque)

    def job_of(self, key: str) -> Job | None:
        with self.lock:
            return next((j for j in self.running + self.waiting if j.key == key), None)

    def runs_left(self, key: str) -> int | None:
        if not LIMITS.runs_per_hour:
            return None
        recent = self.starts[key]
        while recent and recent[0] < time.time() - 3600:
            recent.popleft()
        return max(0, LIMITS.runs_per_hour - len(recent))

    def join(self, job: Job) -> None:
        with self.lock:
            mine = next((j for j in self.running + self.waiting if j.key == job.key), None)
            if mine is not None:
                raise gr.Error(f"you already have a training {mine.state} ({mine.run}); stop it first")
            if self.runs_left(job.key) == 0:
                wait = int(self.starts[job.key][0] + 3600 - time.time()) // 60 + 1
                raise gr.Error(f"you have started {LIMITS.runs_per_hour} trainings in the last hour, the most this "
                               f"Space allows; try again in {wait} minutes")
            if len(self.waiting) >= max(0, LIMITS.slots - len(self.running)) + LIMITS.waiting:
                raise gr.Error(f"the Space is busy: {len(self.running)} trainings are running and {len(self.waiting)} "
                               "visitors are waiting; please try again in a few minutes")
            self.waiting.append(job)

    def turn(self, job: Job) -> int:
        """0 when the job may start now (it is then running), else its place in line (1 = next)."""
        with self.lock:
            place = self.waiting.index(job)
            if place < LIMITS.slots - len(self.running):
                self.waiting.remove(job)
                self.running.append(job)
                job.state = "running"
                if LIMITS.runs_per_hour:
                    self.starts[job.key].append(time.time())
                return 0
            return place + 1

    def leave(self, job: Job) -> None:
        with self.lock:
            if job in self.waiting:
                self.waiting.remove(job)
            if job in self.running:
                self.running.remove(job)
            job.state = "done"
        for other in list(self.waiting):
            other.wake.set()


LINE = Line()


def reap(job: Job) -> None:
    """Wait for the job's process to end (reading what it still says), then free its slot."""
    try:
        if job.proc is not None:
            for _ in job.proc.stdout:
                pass
            job.proc.wait()
    finally:
        try:  # before leaving the line: the visitor's next training may not start on a file about to go
            if job.upload is not None and not (RUNS / job.key / job.run / CONFIG).is_file():
                job.upload.unlink(missing_ok=True)
        finally:
            LINE.leave(job)


def loss_frame(rows: list[dict]) -> pd.DataFrame:
    """Long format for gr.LinePlot: every logged value from the first step, at most 500 points per curve."""
    stride = max(1, len(rows) // 500)
    kept = rows[::stride] + ([rows[-1]] if rows and (len(rows) - 1) % stride else [])
    long = [{"step": r["step"], "loss": k, "value": float(f"{v:.4g}")} for r in kept for k, v in r.items()
            if k != "step" and isinstance(v, (int, float))]
    return pd.DataFrame(long, columns=["step", "loss", "value"])


def status_line(ev: dict) -> str:
    eta = f", about {ev['eta']:.0f} s left" if ev.get("eta") else ""
    return (f"**Step {ev['step']:,} / {ev['total']:,}** · {ev.get('ips') or 0:,.0f} images/s · "
            f"{ev.get('elapsed') or 0:.0f} s{eta}")


DATASETS = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST digits", "cifar10": "CIFAR-10",
            "ring8": "ring of 8 (2-D)", "grid25": "grid of 25 (2-D)", "upload": "your images (.zip)"}
UPLOAD_HINT = (  # what README "Small data" measured, for a visitor about to train on a few hundred images
    f"**Your images**, any size (centre-cropped and resized). Below {AUGMENT_AUTO_BELOW:,} images "
    "augmentation turns on by itself at adaptive strength (wgan-gp: full): p, `augment_p` on the loss plot, "
    "rises once D starts to memorise them. For a few hundred images train **dcgan**: on 500 Fashion-MNIST "
    "images it kept improving to 12,800 steps; sngan got worse after 1,600. Class folders give labels if the "
    "config sets num_classes.")


def dataset_choices(variant: str) -> list[tuple[str, str]]:
    try:
        kinds = registry.get(variant).modalities
    except GanhubError:
        kinds = ("image",)
    pts = {"ring8", "grid25"}
    return [(label, key) for key, label in DATASETS.items() if ("points" if key in pts else "image") in kinds]


def train_args(variant: str, dataset: str, upload, steps: int, run: str, config: str, max_images, precision: str,
               conditional: bool, key: str) -> tuple[dict, str, str]:
    """Check everything a run needs before it waits or starts -> (train() arguments, run name, opening line).
    The run folder is given relative to the visitor's folder (the child's working directory), so the command
    recorded in it reads `ganhub train ... --out dcgan-1a2b3c4d`, not a server path."""
    every = {"preview_every": max(1, min(50, steps // 10)), "checkpoint_every": max(1, min(200, steps // 4)),
             "cwd": str(RUNS / key)}
    if run:  # continue one of the visitor's runs, to the new total; everything else is the recorded run's
        folder = RunFolder(my_run(key, run, "continue"))
        done = folder.step
        if steps <= done:
            raise gr.Error(f"your run {run} is already at step {done:,}; set steps above that to train it further")
        if steps - done > LIMITS.steps:
            raise gr.Error(f"one run may train at most {LIMITS.steps:,} steps; set steps to {done + LIMITS.steps:,} "
                           "or less")
        args = dict(variant=folder.meta["variant"], out=run, steps=steps, resume=True, **every)
        return args, run, f"Continuing your run {run} from step {done:,} to {steps:,}…"
    if steps > LIMITS.steps:
        raise gr.Error(f"one run may train at most {LIMITS.steps:,} steps; lower steps")
    limit = whole(max_images if max_images not in (None, "") else 0, "max images", 0, 10**9) or None
    if precision not in PRECISIONS:
        raise gr.Error(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    try:
        v = registry.get(variant)
    except GanhubError as e:
        raise gr.Error(web(str(e))) from None
    if dataset not in {key for _, key in dataset_choices(variant)}:
        raise gr.Error(f"{variant} cannot learn {DATASETS.get(dataset, repr(dataset))}; pick one of its datasets")
    if conditional:
        if not supports_classes(v):
            raise gr.Error(f"{variant} cannot learn classes; pick a variant that can (sngan), or untick conditional")
        if dataset == "upload":
            raise gr.Error("for your own images, set num_classes in the config (Advanced) to the number of class "
                           "folders in the .zip, and untick conditional")
        if dataset not in ("fashion-mnist", "mnist", "cifar10"):
            raise gr.Error(f"{DATASETS.get(dataset, dataset)} has no classes; untick conditional")
    if dataset == "upload" and not upload:
        raise gr.Error("upload a .zip of images first (one folder per class inside gives labels)")
    try:
        overrides = json.loads(config or "{}")
    except json.JSONDecodeError as e:
        raise gr.Error(f"the config is not valid JSON ({e.msg} at line {e.lineno}); fix it or reset it") from None
    if not isinstance(overrides, dict):
        raise gr.Error("the config must be a JSON object of key: value pairs")
    if conditional:
        overrides["num_classes"] = 10  # the built-in labelled datasets' (checked above)
    defaults = config_to_dict(v.make_config())
    overrides = {k: val for k, val in overrides.items() if defaults.get(k) != val and k != "data"}
    make_config(v.config_cls, overrides)  # every value checked now, not after waiting in line
    name = f"{re.sub(r'[^a-z0-9-]', '-', variant.lower())}-{uuid.uuid4().hex[:8]}"
    args = dict(variant=variant, dataset=upload if dataset == "upload" else dataset, steps=steps, out=name,
                overrides=overrides, limit=limit, precision=precision, **every)
    return args, name, f"Training {variant} on {DATASETS[dataset]}…"


def keep_upload(upload: str, key: str) -> tuple[str, bool]:
    """Keep a visitor's .zip in their folder (Gradio's copy is temporary) -> (its path relative to that
    folder, where trainings run; whether it is new). The run records `--dataset uploads/<name>-<hash>.zip`,
    not a server path, and can be continued after a restart. Named by content: the same .zip is reused."""
    src = Path(upload)
    digest = hashlib.sha256()
    try:
        with src.open("rb") as f:
            while chunk := f.read(2**20):
                digest.update(chunk)
    except OSError:
        raise gr.Error("the uploaded file could not be read; upload the .zip again") from None
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", src.stem)[:40].strip("-") or "images"
    rel = f"{UPLOADS}/{stem}-{digest.hexdigest()[:12]}.zip"
    dst = RUNS / key / rel
    if dst.is_file():
        return rel, False
    part = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, part)
        part.replace(dst)
    except OSError as e:
        part.unlink(missing_ok=True)
        log.error("keeping an upload failed: %s", e)
        raise gr.Error("your .zip could not be kept on this server (it may be out of disk space); nothing "
                       "was trained") from None
    return rel, True


def runs_dropdown(key: str, value: str, extra: str = ""):
    names = my_runs(key)
    if extra and extra not in names:
        names.insert(0, extra)
    return gr.Dropdown(choices=[("a new run", "")] + [(n, n) for n in names], value=value)


@user_errors
def train_gan(variant: str, dataset: str, upload, steps: float, run: str, config: str, max_images: float,
              precision: str, conditional: bool, visitor: str, request: gr.Request):
    """Train a GAN, streaming a preview grid, the loss curves and the progress. A bounded number of trainings
    run at once; if all slots are busy you wait in line (your place is shown) until one frees or you stop.

    Args:
        variant: GAN variant to train (see the plugins endpoint), e.g. "dcgan"; ignored when continuing a run.
        dataset: "fashion-mnist", "mnist", "cifar10", "ring8", "grid25" (2-D points) or "upload".
        upload: a .zip of images when dataset is "upload" (one folder per class inside gives labels).
        steps: the run's total target in training steps; when continuing, the new total.
        run: "" for a new run, or the name of one of your runs to continue it.
        config: JSON object of config values to change, e.g. {"lr_d": 0.0001}; "" or {} for the defaults.
        max_images: use only the first N images of the dataset (0 = all).
        precision: "auto" (bf16 where the hardware runs it natively, else fp32), "bf16" or "fp32".
        conditional: learn the dataset's classes (variants that support it, built-in labelled datasets).
        visitor: your private visitor id (32 hex characters); your runs are kept under it.
    Returns:
        preview: samples of the EMA generator as training goes (lossless PNG).
        loss curves: every logged loss from the first step.
        status: progress, or your place in line.
        run: the run being trained.
    """
    key = visitor_key(visitor, request)
    steps = whole(steps, "steps", 1, 10**9)
    run = str(run or "").strip()
    args, name, opening = train_args(variant, dataset, upload, steps, run, config, max_images, precision,
                                     bool(conditional), key)
    if on_space():
        args["threads"] = max(1, (os.cpu_count() or 1) // LIMITS.slots)
    job = Job(key, name)
    LINE.join(job)
    rows: list[dict] = []
    if run:  # the curves so far (the log may run past the checkpoint it continues from)
        folder = RunFolder(RUNS / key / run)
        rows = [r for r in folder.read_log() if r.get("step", 0) <= folder.step]
    handed_off = False
    try:
        if dataset == "upload" and not run:
            args["dataset"], new = keep_upload(upload, key)
            job.upload = RUNS / key / args["dataset"] if new else None
        shown = None
        while place := LINE.turn(job):
            if job.stop_reason:
                yield gr.skip(), gr.skip(), LEFT_LINE, gr.skip()
                return
            text = (f"**Waiting for a free slot: you are number {place} in line.** {len(LINE.running)} trainings are "
                    f"running and this server runs {LIMITS.slots} at once, so that every visitor's training stays "
                    "fast. Press **Stop** to leave the line.")
            if text != shown:
                shown = text
                yield gr.skip(), gr.skip(), text, gr.skip()
            job.wake.wait(1.0)
            job.wake.clear()
        job.start(args)
        yield gr.skip(), loss_frame(rows), opening, runs_dropdown(key, name, extra=name)
        last, preview = None, gr.skip()
        for line in job.proc.stdout:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows += ev.get("rows") or []
            if LIMITS.minutes and time.time() - job.started > LIMITS.minutes * 60:
                job.stop("time")
            if ev.get("image"):
                img = Image.open(io.BytesIO(base64.b64decode(ev["image"])))
                preview = save(enlarged(img) if img.width < 400 else img, f"{name}-step{ev['step']}.png")
            kind = ev["kind"]
            if kind == "warning":
                gr.Warning(web(ev.get("message") or ""))
                continue
            if kind in ("error", "crash"):
                last = ev
                break
            if kind == "done":  # said after the process has ended and its slot is free (see below)
                last = ev
                continue
            text = status_line(ev)
            if kind == "start":
                text = f"{opening} {web(ev.get('message') or '')}"
            yield preview, loss_frame(rows), text, gr.skip()
        job.proc.wait()
        handed_off = True
        reap(job)
        if last is None or last["kind"] in ("error", "crash"):
            why = web(last["message"]) if last and last["kind"] == "error" else (
                "the training stopped unexpectedly (the server log has details)")
            step = RunFolder(RUNS / key / name).checkpoint_step()
            raise gr.Error(why + (f"; your run {name} keeps its checkpoint at step {step:,}" if step else ""))
        yield gr.skip(), loss_frame(rows), done_text(last, name, job.stop_reason), runs_dropdown(key, name)
    finally:
        if not handed_off:  # stopped waiting, or the page went away: stop with a checkpoint, free the slot after
            job.stop("left")
            threading.Thread(target=reap, args=(job,), daemon=True).start()


def done_text(ev: dict, name: str, reason: str) -> str:
    step = ev["step"]
    if step >= ev["total"]:
        return (f"**Finished: your run {name} trained {step:,} steps.** Pick it as the source in Sample, Interpolate "
                "or Evaluate, download it, or push it to the Hub.")
    why = f"this server allows {LIMITS.minutes:g} minutes per run" if reason == "time" else "as asked"
    return f"**Stopped at step {step:,}** ({why}); the run is kept. Press **Train** to continue it."


LEFT_LINE = "You left the line; nothing was trained."


def stop_training(run: str, visitor: str, request: gr.Request) -> str:
    """Stop your training after the current step (keeping a checkpoint), or leave the line if it is waiting.

    Args:
        run: the run shown (informative; you have at most one training at a time).
        visitor: your private visitor id (32 hex characters).
    Returns:
        status: what happened.
    """
    job = LINE.job_of(visitor_key(visitor, request))
    if job is None:
        return "Nothing of yours is training or waiting right now."
    waiting = job.state == "waiting"
    job.stop("stop")
    # the same words the waiting training shows as it leaves: both write the status box, in either order
    return (LEFT_LINE if waiting else
            "Stopping after the current step; the run is kept: press **Train** to continue it.")


@plain
def download_run(run: str, visitor: str, request: gr.Request):
    """Download one of your runs as a .zip (config, weights, samples, checkpoint to continue elsewhere).

    Args:
        run: the name of one of your runs.
        visitor: your private visitor id (32 hex characters).
    Returns:
        run folder: the .zip file.
    """
    out = my_run(visitor_key(visitor, request), run, "download")
    return shutil.make_archive(str(OUT / uuid.uuid4().hex / out.name), "zip", out)


# ---------------------------------------------------------------------------------------------------------
# Evaluate

METRICS = [("FID", "fid"), ("KID", "kid"), ("Inception score", "is"), ("precision & recall", "pr"),
           ("class coverage", "coverage"), ("conditional accuracy", "accuracy")]
GLOSSARY = """\
- **FID** ↓ Fréchet distance between the feature statistics of generated and real images (Heusel et al. 2017).
- **KID** ↓ the same comparison without FID's bias at small sample counts (Bińkowski et al. 2018).
- **IS** ↑ how confidently and how diversely a classifier labels the samples (Salimans et al. 2016).
- **precision** ↑ share of samples that look like real data; **recall** ↑ share of the data the samples cover
  (Kynkäänniemi et al. 2019).
- **classes covered** ↑ how many Fashion-MNIST classes the generator produces; **class KL** ↓ how far its class
  mix is from the data's.
- **conditional accuracy** ↑ share of samples asked for class k that the classifier puts in class k.

Numbers are comparable only under the same protocol: extractor, sample count and real split (shown below the
table). The Fashion-MNIST classifier's features are not Inception's: these FIDs are not the papers' numbers.
"""


def fmt(v) -> str | float:
    if isinstance(v, dict):
        return f"{v.get('classes')}/{v.get('of')}" if "classes" in v else json.dumps(v)
    return float(f"{v:.4g}") if isinstance(v, (int, float)) else str(v)


def thumbnail_sheet(thumbs: list[tuple[Image.Image, str]]) -> Image.Image:
    """The models' sample grids side by side, each named underneath, in the table's order."""
    tiles = [g.resize((g.width * 2, g.height * 2), Image.NEAREST).convert("RGB") for g, _ in thumbs]
    w, h, gap, f = max(t.width for t in tiles), max(t.height for t in tiles), 16, font(16)
    sheet = Image.new("RGB", (len(tiles) * (w + gap) - gap, h + 28), "white")
    d = ImageDraw.Draw(sheet)
    for i, (tile, (_, name)) in enumerate(zip(tiles, thumbs)):
        sheet.paste(tile, (i * (w + gap), 0))
        d.text((i * (w + gap) + w / 2, h + 6), name, fill="black", font=f, anchor="mt")
    return sheet


def protocol_text(per_metric: dict[str, dict]) -> str:
    """What every metric shares, once; then each metric with its direction and what is its own."""
    protos = {name: {k: v for k, v in (m.get("protocol") or {}).items() if k != "extractor_sha256"}
              for name, m in per_metric.items()}
    first = next(iter(protos.values()), {})
    common = {k: v for k, v in first.items() if all(p.get(k) == v for p in protos.values())}

    def words(items) -> str:
        return "; ".join(f"{k.replace('_', ' ')}: {web(str(v))}" for k, v in items)

    lines = [f"**Protocol.** {words(common.items())}"] if common else ["**Protocol.**"]
    for name, p in protos.items():
        own = words((k, v) for k, v in p.items() if k not in common)
        arrow = "↓ lower is better" if name in LOWER_IS_BETTER else "↑ higher is better"
        lines.append(f"- **{metric_label(name, per_metric[name])}** {arrow}" + (f" — {own}" if own else ""))
    return "\n".join(lines)


@plain
def evaluate_models(sources: list[str], more: str, metrics: list[str], samples: float, visitor: str,
                request: gr.Request, progress=gr.Progress()):
    """Measure models side by side (FID, KID, IS, precision/recall, class coverage) under one stated protocol.

    Args:
        sources: bundled model names (the page also lists your runs here).
        more: more models separated by commas: Hub repo ids user/repo, or "run:<name>" for your runs.
        metrics: any of "fid", "kid", "is", "pr", "coverage", "accuracy".
        samples: generated images per source, 200 to 5000 (more = steadier numbers, slower).
        visitor: your private visitor id (32 hex characters).
    Returns:
        results: one row per source; ↓ lower is better, ↑ higher is better.
        protocol: how each metric was measured.
        samples of each model: 16 samples of each model side by side, named, as a lossless PNG.
    """
    from ganhub.metrics import evaluate

    key = visitor_key(visitor, request)
    chosen = list(sources or []) + [s.strip() for s in (more or "").split(",") if s.strip()]
    if not chosen:
        raise gr.Error("choose at least one model to evaluate")
    if not metrics:
        raise gr.Error("choose at least one metric")
    if len(chosen) > MAX_EVAL_SOURCES:
        raise gr.Error(f"evaluate at most {MAX_EVAL_SOURCES} models at a time; {len(chosen)} were chosen")
    n = whole(samples, "samples", 200, 5000)
    rows, per_metric, thumbs = [], {}, []  # thumbs: (4x4 grid, name) per image model
    for i, src in enumerate(chosen):
        folder, name = source_folder(src, key)
        progress((i, len(chosen)), desc=f"evaluating {name} on {n:,} samples")
        loaded = load(folder)
        result = evaluate(loaded, metrics=tuple(metrics), n=n)
        row = {"source": name}
        for metric, m in result["metrics"].items():
            row[f"{metric_label(metric, m).split(' (')[0]} {'↓' if metric in LOWER_IS_BETTER else '↑'}"] = fmt(m["value"])
            per_metric.setdefault(metric, m)
        rows.append(row)
        if loaded.cfg.data != "points":
            thumbs.append((to_grid(sample(loaded.G, 16, 0)), name))
    sheet = save(thumbnail_sheet(thumbs), "models.png") if thumbs else None
    return pd.DataFrame(rows), protocol_text(per_metric), sheet


# ---------------------------------------------------------------------------------------------------------
# Hub


def visitor_token(token_box: str, oauth_token: gr.OAuthToken | None) -> str | None:
    """On a Space only the signed-in visitor's OAuth token; locally also the token box (else $HF_TOKEN/login)."""
    if oauth_token is not None and oauth_token.token:
        return oauth_token.token
    return None if on_space() else (str(token_box or "").strip() or None)


@plain
def push_to_hub(source: str, repo_id: str, private: bool, token: str, visitor: str, request: gr.Request,
            oauth_token: gr.OAuthToken | None = None, profile: gr.OAuthProfile | None = None):
    """Upload a model (bundled, or one of your runs) to a Hugging Face model repo, with a model card.
    On a Space you must sign in with Hugging Face; the push uses your account only.

    Args:
        source: bundled model name or "run:<name>" for one of your runs.
        repo_id: the repo to create or update, "user/repo"; empty = <you>/<run name> when signed in.
        private: create the repo as private.
        token: a Hugging Face write token (only when running locally; ignored on a Space, where you sign in).
        visitor: your private visitor id (32 hex characters).
    Returns:
        push result: the commit link.
    """
    from ganhub.hub import push

    key = visitor_key(visitor, request)
    tok = visitor_token(token, oauth_token)
    if on_space() and tok is None:
        raise gr.Error("sign in with Hugging Face first (the button above): a push uses your account, never the "
                       "Space's")
    if on_space() and not str(source or "").startswith("run:") and str(source or "").strip() not in bundled():
        raise gr.Error("push a bundled model or one of your runs")
    folder, name = source_folder(source, key)
    repo = str(repo_id or "").strip()
    if not repo and profile is not None:
        repo = f"{profile.username}/{folder.name}"
    if not repo:
        raise gr.Error("enter the repo id to push to, user/repo")
    from huggingface_hub import constants

    url = push(folder, repo, private=bool(private), token=tok, allow_env_token=not on_space())
    return f"Pushed {name} to [{repo}]({constants.ENDPOINT}/{repo}) ([commit]({url}))."


@plain
def pull_from_hub(repo_id: str, token: str, request: gr.Request, oauth_token: gr.OAuthToken | None = None):
    """Download a ganhub model repo from the Hub and show samples of it.

    Args:
        repo_id: "user/repo" or "user/repo@revision".
        token: a Hugging Face token for private repos (only when running locally; sign in on a Space).
    Returns:
        pull result: what was pulled and how to use it.
        samples from the pulled model: a grid of 16 (lossless PNG).
    """
    from ganhub.hub import parse_source, pull

    repo = str(repo_id or "").strip()
    if not repo:
        raise gr.Error("enter a repo id to pull, user/repo")
    name, revision = parse_source(repo)
    path = pull(name, revision=revision, token=visitor_token(token, oauth_token))
    meta = RunFolder(path).meta
    grid = sample_png(path, name.replace("/", "-"), 0, 16, 1.0, None) if meta["config"].get("data") != "points" else None
    return (f"Pulled **{repo}** ({meta.get('variant')}, {int(meta.get('step') or 0):,} steps). Type `{repo}` as the "
            "source in Sample, Interpolate or Evaluate to use it."), grid


# ---------------------------------------------------------------------------------------------------------
# Plugins


def list_plugins() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The installed GAN variants (each a plugin) and the plugins that failed to load, with their error.

    Returns:
        variants: name, summary, data it learns, what the UI offers for it, package and version.
        failed plugins: entry point, package, version and error of each plugin that could not load.
    """
    from ganhub.testing import tiny_config
    from ganhub.variant import build_models

    rows = []
    for e in registry.entries():
        try:
            caps = sorted(capabilities(build_models(e.variant, tiny_config(e.variant))[0]))
        except Exception as ex:  # noqa: BLE001 - a plugin that cannot build is still listed
            caps = [f"build failed: {web(str(ex))}"]
        offers = {"mapping": "style mixing, ψ", "classes": "class picker"}
        rows.append({"variant": e.name, "summary": e.summary, "data": ", ".join(e.variant.modalities),
                     "offers": ", ".join(offers.get(c, c) for c in caps) or "-",
                     "package": f"{e.package} {e.version}"})
    fails = [{"entry point": f.entry_point, "package": f"{f.package} {f.version}", "error": web(str(f.error))}
             for f in registry.failures()]
    return pd.DataFrame(rows), pd.DataFrame(fails, columns=["entry point", "package", "error"])


# ---------------------------------------------------------------------------------------------------------
# The page


def best_bundled() -> str:
    """The bundled model with the lowest recorded FID: what a first visitor should see."""

    def fid(name: str) -> float:
        try:
            return float(RunFolder(weights_dir() / name).metrics["fid"]["value"])
        except (GanhubError, KeyError, TypeError, ValueError):
            return float("inf")

    return min(bundled(), key=fid, default="")


DEFAULT = best_bundled()
MIXER = "stylegan-lite" if "stylegan-lite" in bundled() else DEFAULT


def first_visit() -> dict:
    """What the page shows before any click, computed once at start-up (a few hundred ms on a CPU)."""
    shown: dict = {"card": "", "grid": None, "gif": None, "strip": None, "mix": None, "psi": False, "k": 4, "top": 7}
    if not DEFAULT:
        return shown
    try:
        folder = weights_dir() / DEFAULT
        shown.update(card=card_text(folder, DEFAULT), grid=sample_png(folder, DEFAULT, 0, 36, 1.0, None),
                     psi="mapping" in capabilities(load(folder).G))
        shown["gif"], shown["strip"] = interpolate_seeds(DEFAULT, 0, 1, "slerp", 12, "", None)
        mixer = weights_dir() / MIXER
        G = load(mixer).G
        if "mapping" in capabilities(G):
            shown["top"] = G.num_ws - 1
            shown["k"] = balanced_crossover(str(mixer), (mixer / MODEL).stat().st_mtime)
            shown["mix"] = mix_styles(MIXER, "1, 2, 3", "4, 5, 6", shown["k"], "", None)
    except (gr.Error, GanhubError) as e:  # the page still opens; the visitor sees the message on first use
        log.warning("first-visit images not prepared: %s", e)
    return shown


CSS = """
.gradio-container { max-width: 1366px !important; }
#title h1 { margin: 0; font-size: 1.6rem; }
#title p { margin: 0; }
.pixels img { image-rendering: pixelated; }
.pixels .image-container { padding-top: 34px; }  /* the label and buttons above the image, not over it */
#quota p { font-size: 0.85rem; opacity: 0.8; }
"""


def welcome(visitor: str, request: gr.Request):
    """On each page load: a visitor secret for a new browser, the visitor's runs in every source list."""
    if not SECRET.fullmatch(str(visitor or "")):
        visitor = uuid.uuid4().hex
    key = visitor_key(visitor, request)
    return (visitor, runs_dropdown(key, ""), *visitor_lists(key))


def visitor_lists(key: str) -> tuple:
    """Every source list with the visitor's runs in it, and their quota line."""
    choices = source_choices(key)
    left = LINE.runs_left(key)
    quota = LIMITS.text() + (f" You can start {left} more this hour." if left is not None else "")
    return (*(gr.Dropdown(choices=choices) for _ in range(4)), gr.CheckboxGroup(choices=choices), quota)


def build() -> gr.Blocks:
    first = first_visit()
    sources = [(n, n) for n in bundled()]
    names = [e.name for e in registry.entries()]
    with gr.Blocks(title="ganhub") as demo:
        gr.Markdown("# ganhub\nClassic GANs as plugins: sample the bundled models, train your own in the browser, "
                    "evaluate them, share them on the Hugging Face Hub.", elem_id="title")
        # outside the tabs: a component in a tab not yet shown has not read localStorage when the page loads
        # a fixed key (the browser decrypts with it anyway): a restarted server still reads what browsers kept
        visitor = gr.BrowserState("", storage_key="ganhub-visitor", secret="ganhub-visitor-v1")

        with gr.Tab("Sample"):
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    s_src = OpenDropdown(sources, value=DEFAULT, allow_custom_value=True, label="model",
                                        info="bundled, one of your runs, or a Hub repo id user/repo")
                    s_card = gr.Markdown(first["card"], label="about this model")
                    with gr.Row(equal_height=True):
                        s_seed = gr.Number(0, label="seed", precision=0, minimum=0, scale=3)
                        s_dice = gr.Button("random seed", scale=1, min_width=90)
                    s_n = gr.Slider(1, MAX_SAMPLES, 36, step=1, label="count")
                    s_psi = gr.Slider(0, 1, 1.0, step=0.05, label="truncation ψ", visible=first["psi"],
                                      info="1 = off; lower = more typical, less varied")
                    s_cls = ClassDropdown([("any (random classes)", -1)], value=-1, label="class", visible=False,
                                          allow_custom_value=True)
                    s_btn = gr.Button("Sample", variant="primary")
                with gr.Column(scale=2):
                    s_img = gr.Image(first["grid"], label="samples", type="filepath", format="png",
                                     elem_id="sample-output", elem_classes="pixels", interactive=False,
                                     buttons=["download", "fullscreen"])
            s_in = [s_src, s_seed, s_n, s_psi, s_cls, visitor]
            s_btn.click(sample_images, s_in, s_img, api_name="sample")
            s_dice.click(random_seed, None, s_seed, api_visibility="private").then(
                sample_images, s_in, s_img, api_visibility="private")
            s_src.change(source_controls, [s_src, visitor], [s_card, s_psi, s_cls], api_visibility="private")
            gr.api(describe_model, api_name="describe")

        with gr.Tab("Train"):
            with gr.Row():
                with gr.Column(scale=1, min_width=300):
                    with gr.Row():
                        t_var = gr.Dropdown(names, value="dcgan" if "dcgan" in names else names[0], label="variant")
                        t_data = OpenDropdown(dataset_choices("dcgan" if "dcgan" in names else names[0]),
                                             value="fashion-mnist", label="dataset", allow_custom_value=True)
                    t_zip = gr.File(label=".zip of images", file_types=[".zip"], type="filepath",
                                    visible=False, height=120)
                    t_hint = gr.Markdown(UPLOAD_HINT, visible=False, elem_id="upload-hint")
                    with gr.Row():
                        t_steps = gr.Number(500, label="steps", precision=0, minimum=1, info="total for the run")
                        t_run = OpenDropdown([("a new run", "")], value="", label="run", allow_custom_value=True,
                                            info="a new run, or one of yours to continue")
                    with gr.Row():
                        t_go = gr.Button("Train", variant="primary")
                        t_stop = gr.Button("Stop")
                    t_status = gr.Markdown("Pick a variant and a dataset, then press **Train**: previews and loss "
                                           "curves appear as it learns.", label="status", elem_id="train-status")
                    t_quota = gr.Markdown(LIMITS.text(), elem_id="quota")
                with gr.Column(scale=2):
                    with gr.Row():
                        t_prev = gr.Image(label="preview (EMA generator)", type="filepath", format="png",
                                          elem_id="train-preview", elem_classes="pixels", interactive=False,
                                          height=320, buttons=["download", "fullscreen"])
                        t_plot = gr.LinePlot(x="step", y="value", color="loss", label="loss curves", y_title="loss",
                                             elem_id="train-losses")  # no fixed height: it would hide the legend
            with gr.Accordion("Advanced", open=False):
                with gr.Row():
                    t_max = gr.Number(0, label="max images (0 = all)", precision=0, minimum=0, elem_id="max-images")
                    t_dl = gr.Button("Download the run (.zip)")
                    t_zipout = gr.File(label="run folder (.zip)")
                t_cond = gr.Checkbox(False, label="class-conditional: learn each class, then sample by class",
                                     visible=supports_classes(registry.get(t_var.value)))
                t_prec = gr.Radio(list(PRECISIONS), value="auto", label="precision",
                                  info="auto = bf16 where the hardware runs it natively, else fp32")
                t_cfg = gr.Code(config_json(t_var.value), language="json", label="config (edit values; defaults shown)")
            t_var.change(config_and_data, t_var, [t_cfg, t_data, t_run, t_cond], api_visibility="private")
            t_data.change(lambda d: (gr.File(visible=d == "upload"), gr.Markdown(visible=d == "upload"), ""),
                          t_data, [t_zip, t_hint, t_run], api_visibility="private")
            ev = t_go.click(train_gan, [t_var, t_data, t_zip, t_steps, t_run, t_cfg, t_max, t_prec, t_cond, visitor],
                            [t_prev, t_plot, t_status, t_run], api_name="train", concurrency_id="train",
                            concurrency_limit=LIMITS.slots + LIMITS.waiting + 2)
            t_stop.click(stop_training, [t_run, visitor], t_status, api_name="stop", concurrency_limit=None)
            t_dl.click(download_run, [t_run, visitor], t_zipout, api_name="download")

        with gr.Tab("Interpolate"):
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    i_src = OpenDropdown(sources, value=DEFAULT, allow_custom_value=True, label="model")
                    with gr.Row():
                        i_a = gr.Number(0, label="seed A", precision=0, minimum=0)
                        i_b = gr.Number(1, label="seed B", precision=0, minimum=0)
                    i_m = gr.Radio(["slerp", "lerp"], value="slerp", label="path",
                                   info="slerp follows the sphere where Gaussian latents live")
                    i_f = gr.Slider(2, MAX_FRAMES, 12, step=1, label="frames")
                    i_btn = gr.Button("Interpolate", variant="primary")
                with gr.Column(scale=2):
                    i_gif = gr.Image(first["gif"], label="animation", type="filepath", elem_id="interp-gif",
                                     elem_classes="pixels", interactive=False, height=360,
                                     buttons=["download", "fullscreen"])
                    i_strip = gr.Image(first["strip"], label="frames", type="filepath", format="png",
                                       elem_classes="pixels", interactive=False, buttons=["download"])
            i_btn.click(interpolate_seeds, [i_src, i_a, i_b, i_m, i_f, visitor], [i_gif, i_strip], api_name="interpolate")

        with gr.Tab("Style mix"):
            with gr.Row():
                with gr.Column(scale=1, min_width=280):
                    gr.Markdown("Each image takes its **coarse** styles (pose, shape) from its row's seed and its "
                                "**fine** styles (texture, shading) from its column's seed. Needs a generator with "
                                "a mapping network (stylegan-lite).")
                    m_src = OpenDropdown(sources, value=MIXER, allow_custom_value=True, label="model")
                    m_rows = gr.Textbox("1, 2, 3", label="row seeds (coarse styles)")
                    m_cols = gr.Textbox("4, 5, 6", label="column seeds (fine styles)")
                    m_x = gr.Slider(1, first["top"], first["k"], step=1, label="crossover layer",
                                    info="layers before it come from the row seed")
                    m_btn = gr.Button("Mix", variant="primary")
                with gr.Column(scale=2):
                    m_img = gr.Image(first["mix"], label="style mix", type="filepath", format="png",
                                     elem_classes="pixels", interactive=False, buttons=["download", "fullscreen"])
            m_src.change(crossover_slider, [m_src, visitor], m_x, api_visibility="private")
            m_btn.click(mix_styles, [m_src, m_rows, m_cols, m_x, visitor], m_img, api_name="style_mix")

        with gr.Tab("Evaluate"):
            with gr.Row():
                e_src = gr.CheckboxGroup(sources, value=[DEFAULT] if DEFAULT else [], label="models")
                e_more = gr.Textbox(label="more models", info="Hub repo ids user/repo, separated by commas")
            with gr.Row():
                e_met = gr.CheckboxGroup(METRICS, value=["fid", "kid", "pr", "coverage"], label="metrics")
                e_n = gr.Slider(200, 5000, 1000, step=100, label="samples per model")
            e_btn = gr.Button("Evaluate", variant="primary")
            e_table = gr.Dataframe(pd.DataFrame(columns=["source", "FID ↓", "KID ↓", "precision ↑", "recall ↑",
                                                       "classes covered ↑"]),
                                   label="results (↓ lower is better, ↑ higher is better)")
            e_thumbs = gr.Image(label="samples of each model", type="filepath", format="png", interactive=False,
                                elem_classes="pixels", buttons=["download", "fullscreen"])
            e_proto = gr.Markdown(label="protocol")
            with gr.Accordion("What the metrics mean", open=False):
                gr.Markdown(GLOSSARY)
            e_btn.click(evaluate_models, [e_src, e_more, e_met, e_n, visitor], [e_table, e_proto, e_thumbs],
                        api_name="evaluate", concurrency_id="evaluate", concurrency_limit=1)

        with gr.Tab("Hub"):
            if on_space():  # OAuth sign-in with write scopes (README front matter); pushes use only this
                gr.LoginButton()
            else:
                gr.Markdown("Running locally: pushes use the token box below, else `$HF_TOKEN` or your saved login.")
            with gr.Row():
                h_src = OpenDropdown(sources, value=DEFAULT, label="model to push", allow_custom_value=True)
                h_repo = gr.Textbox(label="repo id", placeholder="user/repo" + (" (empty: yours/run name)" if on_space() else ""))
                h_priv = gr.Checkbox(False, label="private")
                h_tok = gr.Textbox(label="token (never stored)", type="password", visible=not on_space())
            h_push = gr.Button("Push", variant="primary")
            h_out = gr.Markdown(label="push result")
            h_push.click(push_to_hub, [h_src, h_repo, h_priv, h_tok, visitor], h_out, api_name="push")
            with gr.Row():
                p_repo = gr.Textbox(label="repo id to pull", placeholder="user/repo")
                p_btn = gr.Button("Pull")
            p_out = gr.Markdown(label="pull result")
            p_img = gr.Image(type="filepath", format="png", label="samples from the pulled model", interactive=False)
            p_btn.click(pull_from_hub, [p_repo, h_tok], [p_out, p_img], api_name="pull")

        with gr.Tab("Plugins"):
            pl_btn = gr.Button("Refresh")
            pl_tab = gr.Dataframe(label="variants", wrap=True, column_widths=["12%", "44%", "10%", "16%", "18%"])
            pl_fail = gr.Dataframe(label="plugins that failed to load", wrap=True)
            pl_btn.click(list_plugins, None, [pl_tab, pl_fail], api_name="plugins")
            demo.load(list_plugins, None, [pl_tab, pl_fail], api_visibility="private")

        demo.load(welcome, visitor, [visitor, t_run, s_src, i_src, m_src, h_src, e_src, t_quota],
                  api_visibility="private")
        ev.then(refresh_sources, visitor, [s_src, i_src, m_src, h_src, e_src, t_quota], api_visibility="private")
    for fn in demo.fns.values():  # gr.LoginButton's own page-load check is not an API endpoint or an MCP tool
        if getattr(fn.fn, "__name__", "") == "_check_login_status":
            fn.api_visibility = "private"
    return demo


def refresh_sources(visitor: str, request: gr.Request):
    """After a training: the new run in every source list, and the runs left this hour."""
    return visitor_lists(visitor_key(visitor, request))


def config_json(variant: str) -> str:
    try:
        return json.dumps(config_to_dict(registry.get(variant).make_config()), indent=2)
    except GanhubError as e:
        raise gr.Error(web(str(e))) from None


def config_and_data(variant: str):
    """A new variant: its default config, the datasets it can learn, and a new run (not the old one)."""
    data = dataset_choices(variant)
    try:
        classes = supports_classes(registry.get(variant))
    except GanhubError:
        classes = False
    return (config_json(variant), gr.Dropdown(choices=data, value=data[0][1] if data else None), "",
            gr.Checkbox(visible=classes, value=False))


demo = build()


def launch(**kwargs):
    """Serve the app as a Space does: queue, MCP server, no run history, CSS; kwargs go to Blocks.launch."""
    kwargs.setdefault("mcp_server", True)
    kwargs.setdefault("max_file_size", "200mb" if on_space() else None)
    return demo.queue(default_concurrency_limit=2).launch(css=CSS, run_history=False, **kwargs)


if __name__ == "__main__":
    launch()
