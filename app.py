"""ganhub's Gradio app: sample, interpolate, style-mix, train, evaluate, push/pull, plugins.

Built only from the registry and ganhub's public API: a newly installed plugin appears with no change
here. `python app.py` serves it (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are honoured by Gradio).
Every action has a stable api_name so gradio_client and scripts can drive it.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import tempfile
import threading
import uuid
from functools import lru_cache, wraps
from pathlib import Path

import gradio as gr
import pandas as pd

# The bundled weights sit next to this file, wherever ganhub itself was installed.
os.environ.setdefault("GANHUB_WEIGHTS_DIR", str(Path(__file__).resolve().parent / "weights"))
# Gradio's run history keeps every call's inputs in the browser's localStorage, the Hub token box
# included; a token must never be stored, so it is off (launch() reads this when not told otherwise).
os.environ.setdefault("GRADIO_RUN_HISTORY", "false")

from ganhub import registry
from ganhub.errors import GanhubError
from ganhub.run import CHECKPOINT, CONFIG, read_config
from ganhub.sample import gif_bytes, interpolate, sample, style_mix, to_grid, to_pil
from ganhub.source import bundled, load_generator, weights_dir
from ganhub.variant import capabilities, config_to_dict

log = logging.getLogger("ganhub.app")
RUNS = Path(os.environ.get("GANHUB_RUNS_DIR", "runs/app")).resolve()
OUT = Path(tempfile.mkdtemp(prefix="ganhub-app-"))
MAX_SAMPLES, MAX_FRAMES, MAX_STEPS, MAX_EVAL_SOURCES = 64, 32, 20_000, 6  # bounds per request on a free 2-vCPU Space


def _best_bundled() -> str:
    """The bundled model with the lowest recorded FID: what a first visitor should see."""

    def fid(name: str) -> float:
        try:
            return float(json.loads((weights_dir() / name / CONFIG).read_text())["metrics"]["fid"]["value"])
        except (OSError, KeyError, TypeError, ValueError):
            return float("inf")

    return min(bundled(), key=fid, default="")


DEFAULT = _best_bundled()
ON_SPACES = bool(os.environ.get("SPACE_ID"))
JOBS: dict[str, dict] = {}  # session hash -> {"stop": Event, "out": Path}: one training job per session


def user_errors(fn):
    """GanhubError -> gr.Error with its sentence; anything else -> a short sentence, logged here."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
            if hasattr(result, "__next__"):
                yield from result
            else:
                yield result
        except gr.Error:
            raise
        except GanhubError as e:
            raise gr.Error(str(e)) from None
        except Exception:
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(f"{fn.__name__.replace('_', ' ')} failed unexpectedly; the server log has details") from None

    return wrapper


def plain(fn):
    """user_errors for non-streaming handlers (returns the single value)."""
    gen = user_errors(fn)

    @wraps(fn)
    def wrapper(*args, **kwargs):
        return next(gen(*args, **kwargs))

    return wrapper


@lru_cache(maxsize=8)
def _load(source: str):
    return load_generator(source.strip())


def _save(img, name: str) -> str:
    """Write a download under a readable file name (one fresh folder per request, so names never clash)."""
    path = OUT / uuid.uuid4().hex / "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    path.parent.mkdir()
    img.save(path) if hasattr(img, "save") else path.write_bytes(img)
    return str(path)


def _scaled(img, scale: int = 4):
    return img.resize((img.width * scale, img.height * scale), 0) if img.width < 400 else img


@plain
def do_sample(source: str, seed: float, n: float, truncation: float):
    n = int(n)
    if not 1 <= n <= MAX_SAMPLES:
        raise gr.Error(f"count must be between 1 and {MAX_SAMPLES}")
    G = _load(source).G
    psi = float(truncation) if "mapping" in capabilities(G) else 1.0
    grid = to_grid(sample(G, n, int(seed), truncation=psi))
    return _scaled(grid, 3), _save(grid, f"{Path(source.strip()).name}-seed{int(seed)}-n{n}.png")


@plain
def do_interpolate(source: str, seed_a: float, seed_b: float, method: str, frames: float):
    frames = int(frames)
    if not 2 <= frames <= MAX_FRAMES:
        raise gr.Error(f"frames must be between 2 and {MAX_FRAMES}")
    x = interpolate(_load(source).G, int(seed_a), int(seed_b), frames, method)
    if x.dim() != 4:
        raise gr.Error("interpolation needs an image generator")
    name = f"{Path(source.strip()).name}-{method}-seed{int(seed_a)}-to-{int(seed_b)}.gif"
    return [_scaled(to_pil(f), 4) for f in x], _save(gif_bytes(x), name)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in str(text).replace(",", " ").split()]
    except ValueError:
        raise gr.Error(f"seeds must be whole numbers separated by commas, got {text!r}") from None
    if not 1 <= len(seeds) <= 8:
        raise gr.Error("give between 1 and 8 seeds")
    return seeds


@plain
def do_style_mix(source: str, rows: str, cols: str, crossover: float):
    G = _load(source).G
    if "mapping" not in capabilities(G):
        raise gr.Error(f"{_load(source).name} has no mapping network, so coarse and fine styles cannot be mixed; "
                       "pick a stylegan-lite source")
    return _scaled(style_mix(G, _seeds(rows), _seeds(cols), int(crossover)), 3)


def crossover_slider(source: str, current: float = 4):
    """The crossover slider's range follows the generator: layers 1 .. num_ws - 1."""
    try:
        top = int(_load(source).G.num_ws) - 1
    except (GanhubError, AttributeError, TypeError, ValueError):  # no mapping network: do_style_mix explains
        return gr.Slider(minimum=1, maximum=9, value=current)
    return gr.Slider(minimum=1, maximum=top, value=min(max(int(current), 1), top))


def config_json(variant: str) -> str:
    try:
        return json.dumps(config_to_dict(registry.get(variant).make_config()), indent=2)
    except GanhubError as e:
        raise gr.Error(str(e)) from None


def _loss_frame(out: Path) -> pd.DataFrame:
    from ganhub.train import read_log

    rows = read_log(out)[-2000:]
    long = [{"step": r["step"], "loss": k, "value": v} for r in rows for k, v in r.items() if k != "step"]
    return pd.DataFrame(long or [{"step": 0, "loss": "loss_D", "value": 0.0}])


def _app_run(run_dir: str, what: str) -> Path:
    """A run folder this app trained, named in the 'run folder' box. Nothing outside RUNS: the handlers are
    a public API on a Space, and the random folder name is what keeps one visitor's run from another's."""
    out = Path(run_dir or "").resolve()
    if not str(run_dir or "").strip() or not out.is_relative_to(RUNS) or not (out / CHECKPOINT).is_file():
        raise gr.Error(f"nothing to {what}: train first, or put a run folder of this app in the 'run folder' box "
                       "(the last one is remembered in this browser)")
    return out


def _cli_command(variant: str, dataset: str, steps: int, out: Path, overrides: dict, limit: int | None) -> str:
    """The `ganhub train` command that reproduces an app run (recorded in config.json and the model card)."""
    parts = ["ganhub", "train", variant, "--dataset", "<your images>.zip" if dataset == "upload (zip)" else dataset,
             "--steps", str(steps), "--seed", "0", "--out", f"runs/{out.name}"]
    if limit:
        parts += ["--limit", str(limit)]
    for key, value in overrides.items():
        shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        parts += ["--set", f"{key}={shown}"]
    return shlex.join(parts)


@user_errors
def do_train(variant: str, dataset: str, upload, config_text: str, steps: float, max_images: float, resume: bool,
             run_dir: str, request: gr.Request):
    from ganhub.train import train

    session = getattr(request, "session_hash", None) or "cli"
    job = JOBS.get(session)
    if job and job.get("running"):
        raise gr.Error("a training job is already running in this session; stop it first")
    try:
        overrides = json.loads(config_text or "{}")
    except json.JSONDecodeError as e:
        raise gr.Error(f"the config is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(overrides, dict):
        raise gr.Error("the config must be a JSON object of key: value")
    steps = int(steps)
    if not 1 <= steps <= MAX_STEPS:
        raise gr.Error(f"steps must be between 1 and {MAX_STEPS:,}")
    source = upload if dataset == "upload (zip)" else dataset
    if not source:
        raise gr.Error("upload a .zip of images first")
    if resume:  # the folder in the box: survives reloads and restarts, unlike the session
        out = _app_run(run_dir, "resume")
        if any(j["running"] and j["out"] == out for j in JOBS.values()):
            raise gr.Error("that run folder is training right now (in another tab?); stop it there first")
        meta = read_config(out)
        variant = meta["variant"]  # the run's own variant, whatever the dropdown shows
        command = shlex.split(meta.get("recipe", {}).get("command", ""))
        if "--steps" in command[:-1]:  # the same run, carried to the new target: resuming is exact
            command[command.index("--steps") + 1] = str(steps)
        command = shlex.join(command) if command else None
    else:
        out = RUNS / f"{variant}-{uuid.uuid4().hex[:8]}"
        defaults = config_to_dict(registry.get(variant).make_config())
        overrides = {k: v for k, v in overrides.items() if defaults.get(k) != v}
        command = _cli_command(variant, dataset, steps, out, overrides, int(max_images) or None)
    stop = threading.Event()
    JOBS[session] = job = {"stop": stop, "out": out, "running": True}
    preview, status, events = None, "starting…", None
    try:
        events = train(variant, dataset=source, steps=steps, out=out, overrides=None if resume else overrides,
                       resume=resume, stop=stop, limit=int(max_images) or None, preview_every=max(1, min(50, steps // 10)),
                       checkpoint_every=max(1, min(200, steps // 4)), command=command)
        for ev in events:
            if ev.image is not None:
                preview = _scaled(ev.image, 2)
            if ev.kind == "warning":
                gr.Warning(ev.message)
                continue
            eta = f", ETA {ev.eta:.0f} s" if ev.eta else ""
            status = (f"**step {ev.step:,} / {ev.total:,}** · {ev.images_per_s:.0f} img/s · {ev.elapsed:.0f} s elapsed{eta}"
                      if ev.kind != "done" else f"**{ev.message}**")
            if ev.kind in ("preview", "checkpoint", "done", "start") or ev.step % 10 == 0:
                yield preview, _loss_frame(out), status, str(out), str(out)
    finally:  # also when the browser tab closes: closing the loop saves a checkpoint before the job is free
        if events is not None:
            events.close()
        job["running"] = False


def do_stop(run_dir: str, request: gr.Request) -> str:
    """Stop this session's run, or (after a reload, which starts a new session) the run in the box."""
    job = JOBS.get(getattr(request, "session_hash", None) or "cli")
    if not job or not job.get("running"):
        shown = Path(run_dir or "").resolve() if str(run_dir or "").strip() else None
        job = next((j for j in JOBS.values() if j["running"] and j["out"] == shown), None)
    if not job:
        return "no training is running in this session or in the run folder shown"
    job["stop"].set()
    return "stopping after the current step; the checkpoint is kept: tick **resume** and press **Train** to continue it"


@plain
def do_download(run_dir: str):
    out = _app_run(run_dir, "download")
    return shutil.make_archive(str(OUT / out.name), "zip", out)


@plain
def do_evaluate(sources: list[str], extra: str, metrics: list[str], n: float, progress=gr.Progress()):
    from ganhub.metrics import evaluate

    chosen = list(sources or []) + [s.strip() for s in (extra or "").split(",") if s.strip()]
    if not chosen:
        raise gr.Error("choose at least one source")
    if not metrics:
        raise gr.Error("choose at least one metric")
    if len(chosen) > MAX_EVAL_SOURCES:
        raise gr.Error(f"evaluate at most {MAX_EVAL_SOURCES} sources at a time; {len(chosen)} were chosen")
    rows, protocol = [], ""
    for i, src in enumerate(chosen):
        progress((i, len(chosen)), desc=f"evaluating {src} ({int(n):,} samples)")
        r = evaluate(src, metrics=tuple(metrics), n=int(n))
        row = {"source": src}
        for name, m in r["metrics"].items():
            v = m["value"]
            row[name] = f"{v['classes']}/{v['of']}, KL {v['kl']:.3f}" if name == "coverage" else round(v, 4)
            protocol = "; ".join(f"{k}={x}" for k, x in m["protocol"].items())
        rows.append(row)
    return pd.DataFrame(rows), f"**Protocol:** {protocol}"


def _hub_token(token_box: str, oauth_token: gr.OAuthToken | None) -> str | None:
    return (oauth_token.token if oauth_token else None) or (token_box or "").strip() or None


@plain
def do_push(source: str, repo_id: str, private: bool, token_box: str, oauth_token: gr.OAuthToken | None = None):
    from ganhub.hub import push
    from ganhub.source import resolve

    folder = resolve(source.strip())
    return f"pushed: {push(folder, repo_id.strip(), private=private, token=_hub_token(token_box, oauth_token))}"


@plain
def do_pull(repo_id: str, token_box: str, oauth_token: gr.OAuthToken | None = None):
    from ganhub.hub import pull

    path = pull(repo_id.strip(), token=_hub_token(token_box, oauth_token))
    _load.cache_clear()
    G = load_generator(path).G
    return f"pulled to {path}", _scaled(to_grid(sample(G, 16, 0)), 3)


def plugins_table() -> tuple[pd.DataFrame, pd.DataFrame]:
    from ganhub.testing import tiny_config
    from ganhub.variant import build_models

    rows = []
    for e in registry.entries():
        try:
            caps = sorted(capabilities(build_models(e.variant, tiny_config(e.variant))[0]))
        except Exception as ex:  # a plugin that cannot build is still listed
            caps = [f"build failed: {ex}"]
        rows.append({"variant": e.name, "package": e.package, "version": e.version, "summary": e.summary,
                     "data": ", ".join(e.variant.modalities), "capabilities": ", ".join(caps) or "-"})
    fails = [{"entry point": f.entry_point, "package": f.package, "version": f.version, "error": f.error}
             for f in registry.failures()]
    return pd.DataFrame(rows), pd.DataFrame(fails or [{"entry point": "-", "package": "-", "version": "-", "error": "none"}])


with gr.Blocks(title="ganhub") as demo:
    gr.Markdown("# ganhub\nEvery classic GAN as a plugin: sample the bundled models, train your own, evaluate, share on the Hub.")
    sources = bundled()
    # outside the tabs: a component in a tab not yet shown has not read localStorage when the page loads
    t_last = gr.BrowserState("", storage_key="ganhub-last-run")  # the last run folder trained in this browser
    with gr.Tab("Sample"):
        with gr.Row():
            s_src = gr.Dropdown(sources, value=DEFAULT, allow_custom_value=True, label="source",
                                info="bundled weights, a run folder path, or a Hub repo id user/repo")
            s_seed = gr.Number(0, label="seed", precision=0)
            s_n = gr.Slider(1, MAX_SAMPLES, 36, step=1, label="count")
            s_psi = gr.Slider(0, 1, 1.0, step=0.05, label="truncation ψ (mapping networks only)")
        s_btn = gr.Button("Sample", variant="primary")
        s_img = gr.Image(label="samples", type="pil", elem_id="sample-output")
        s_file = gr.File(label="download PNG")
        s_btn.click(do_sample, [s_src, s_seed, s_n, s_psi], [s_img, s_file], api_name="sample")
    with gr.Tab("Interpolate"):
        with gr.Row():
            i_src = gr.Dropdown(sources, value=DEFAULT, allow_custom_value=True, label="source")
            i_a, i_b = gr.Number(0, label="seed A", precision=0), gr.Number(1, label="seed B", precision=0)
            i_m = gr.Radio(["slerp", "lerp"], value="slerp", label="path")
            i_f = gr.Slider(2, MAX_FRAMES, 12, step=1, label="frames")
        i_btn = gr.Button("Interpolate", variant="primary")
        i_gal = gr.Gallery(label="frames", columns=8)
        i_gif = gr.File(label="animated GIF")
        i_btn.click(do_interpolate, [i_src, i_a, i_b, i_m, i_f], [i_gal, i_gif], api_name="interpolate")
    with gr.Tab("Style mix"):
        gr.Markdown("Rows take the coarse styles (layers before the crossover), columns the fine ones. "
                    "Needs a generator with a mapping network (stylegan-lite).")
        with gr.Row():
            m_src = gr.Dropdown(sources, value="stylegan-lite" if "stylegan-lite" in sources else DEFAULT,
                                allow_custom_value=True, label="source")
            m_rows, m_cols = gr.Textbox("1, 2, 3", label="row seeds"), gr.Textbox("4, 5, 6", label="column seeds")
            m_x = gr.Slider(1, 9, 4, step=1, label="crossover layer")
        m_src.change(crossover_slider, [m_src, m_x], m_x, api_name=False)
        demo.load(crossover_slider, [m_src, m_x], m_x, api_name=False)
        m_btn = gr.Button("Mix", variant="primary")
        m_img = gr.Image(label="style mixing", type="pil")
        m_btn.click(do_style_mix, [m_src, m_rows, m_cols, m_x], m_img, api_name="style_mix")
    with gr.Tab("Train"):
        names = [e.name for e in registry.entries()]
        with gr.Row():
            t_var = gr.Dropdown(names, value="dcgan" if "dcgan" in names else names[0], label="variant")
            t_data = gr.Dropdown(["fashion-mnist", "mnist", "cifar10", "upload (zip)"], value="fashion-mnist", label="dataset")
            t_zip = gr.File(label=".zip of images", file_types=[".zip"], type="filepath")
        with gr.Row():
            t_steps = gr.Number(500, label="steps (total target)", precision=0)
            t_max = gr.Number(0, label="max images (0 = all)", precision=0)
            t_resume = gr.Checkbox(False, label="resume the run folder below")
        t_cfg = gr.Code(config_json(t_var.value), language="json", label="config (edit values; defaults shown)")
        t_var.change(config_json, t_var, t_cfg, api_name=False)
        with gr.Row():
            t_go, t_stop, t_dl = gr.Button("Train", variant="primary"), gr.Button("Stop"), gr.Button("Download run folder")
        t_status = gr.Markdown()
        with gr.Row():
            t_prev = gr.Image(label="preview (EMA generator)", type="pil")
            t_plot = gr.LinePlot(x="step", y="value", color="loss", label="losses")
        t_dir = gr.Textbox(label="run folder", elem_id="train-run-dir", info="Resume continues this folder; the last one is remembered in this browser")
        t_zipout = gr.File(label="run folder (.zip)")
        t_go.click(do_train, [t_var, t_data, t_zip, t_cfg, t_steps, t_max, t_resume, t_dir],
                   [t_prev, t_plot, t_status, t_dir, t_last], api_name="train", concurrency_limit=1)
        t_stop.click(do_stop, t_dir, t_status, api_name="stop")
        t_dl.click(do_download, t_dir, t_zipout, api_name="download")
    with gr.Tab("Evaluate"):
        with gr.Row():
            e_src = gr.CheckboxGroup(sources, value=[DEFAULT] if DEFAULT else [], label="bundled weights")
            e_extra = gr.Textbox(label="more sources (comma-separated run folders or repo ids)")
        with gr.Row():
            e_met = gr.CheckboxGroup(["fid", "kid", "is", "pr", "coverage"], value=["fid", "kid", "pr", "coverage"], label="metrics")
            e_n = gr.Slider(200, 5000, 1000, step=100, label="samples")
        e_btn = gr.Button("Evaluate", variant="primary")
        e_table, e_proto = gr.Dataframe(label="results"), gr.Markdown()
        e_btn.click(do_evaluate, [e_src, e_extra, e_met, e_n], [e_table, e_proto], api_name="evaluate", concurrency_limit=1)
    with gr.Tab("Hub"):
        if ON_SPACES:  # OAuth sign-in (write scope, see README front matter); locally: $HF_TOKEN or `hf auth login`
            gr.LoginButton()
        else:
            gr.Markdown("Running locally: pushes use the token box below, else `$HF_TOKEN` or your `hf auth login` token.")
        with gr.Row():
            h_src = gr.Dropdown(sources, value=DEFAULT, allow_custom_value=True, label="folder to push")
            h_repo = gr.Textbox(label="repo id (user/repo)")
            h_priv = gr.Checkbox(False, label="private")
            h_tok = gr.Textbox(label="token (only when not signed in; never stored)", type="password")
        h_push = gr.Button("Push", variant="primary")
        h_out = gr.Markdown()
        h_push.click(do_push, [h_src, h_repo, h_priv, h_tok], h_out, api_name="push")
        p_repo = gr.Textbox(label="repo id to pull")
        p_btn = gr.Button("Pull")
        p_out, p_img = gr.Markdown(), gr.Image(type="pil", label="samples from the pulled model")
        p_btn.click(do_pull, [p_repo, h_tok], [p_out, p_img], api_name="pull")
    with gr.Tab("Plugins"):
        pl_btn = gr.Button("Refresh")
        pl_tab, pl_fail = gr.Dataframe(label="variants"), gr.Dataframe(label="plugins that failed to load")
        pl_btn.click(plugins_table, None, [pl_tab, pl_fail], api_name="plugins")
        demo.load(plugins_table, None, [pl_tab, pl_fail], api_name=False)
    demo.load(lambda last: last, t_last, t_dir, api_name=False)  # a reload brings the last run back, ready to resume


if __name__ == "__main__":
    demo.queue(default_concurrency_limit=2).launch()
