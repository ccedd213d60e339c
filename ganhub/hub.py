"""The Hugging Face Hub: push and pull run folders, model cards. Only through huggingface_hub.

A Hub model repo is a ganhub folder (config.json + model.safetensors + samples.png + README.md), which
also follows huggingface_hub's PyTorchModelHubMixin layout. Tokens come from the argument, $HF_TOKEN or
the standard login, and never appear in logs, files, cards or error messages.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ganhub.errors import GanhubError
from ganhub.run import CONFIG, MODEL, SAMPLES, read_config

REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+(@[\w./-]+)?$")
HUB_DATASETS = {"fashion-mnist": "zalando-datasets/fashion_mnist", "mnist": "ylecun/mnist", "cifar10": "uoft-cs/cifar10"}


class HubError(GanhubError):
    pass


def _token(token: str | None) -> str | None:
    if token:
        return token
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    from huggingface_hub import get_token

    return get_token()


def _scrub(text: str, token: str | None) -> str:
    text = re.sub(r"hf_[A-Za-z0-9]{6,}", "hf_***", text)
    return text.replace(token, "***") if token else text


def _explain(e: Exception, repo_id: str, token: str | None, action: str) -> HubError:
    """Map huggingface_hub / network exceptions to one-line messages that say what to do."""
    from huggingface_hub import errors as hf

    status = getattr(getattr(e, "response", None), "status_code", None)
    if isinstance(e, hf.RevisionNotFoundError):
        msg = f"revision not found in {repo_id}; check --revision"
    elif isinstance(e, hf.RepositoryNotFoundError) or (status == 404 and action == "pull"):
        msg = f"repo {repo_id} not found (or private and your token cannot read it); check the id or pass --token"
    elif isinstance(e, (hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError)):
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            msg = f"{repo_id} is not in the local Hub cache and HF_HUB_OFFLINE=1; pull it once while online"
        else:
            msg = f"cannot reach the Hub ({constants.ENDPOINT}) and {repo_id} is not cached; check your network or HF_ENDPOINT"
    elif status in (401, 403):
        msg = (f"the Hub refused the token ({status}) for {action} {repo_id}; log in with `hf auth login`, set HF_TOKEN "
               f"or pass --token with write access")
    elif status is not None:
        msg = f"the Hub answered {status} to {action} {repo_id}: {_scrub(str(e).splitlines()[0], token)}"
    else:
        msg = f"cannot reach the Hub to {action} {repo_id} ({type(e).__name__}); check your network or HF_ENDPOINT"
    return HubError(_scrub(msg, token))


def _split(source: str) -> tuple[str, str | None]:
    repo, _, rev = source.partition("@")
    return repo, rev or None


def pull(repo_id: str, *, revision: str | None = None, token: str | None = None) -> Path:
    """Download a ganhub repo into the standard HF cache (works offline from the cache)."""
    from huggingface_hub import snapshot_download

    if not REPO_ID.match(repo_id):
        raise HubError(f"{repo_id!r} is not a Hub repo id; use user/repo")
    tok = _token(token)
    try:
        path = Path(snapshot_download(repo_id, revision=revision, token=tok or None,
                                      allow_patterns=[CONFIG, MODEL, SAMPLES, "README.md"]))
    except Exception as e:  # every failure becomes one line; the token is scrubbed
        raise _explain(e, repo_id, tok, "pull") from None
    if not (path / CONFIG).is_file():
        raise HubError(f"{repo_id} is not a ganhub model repo (no {CONFIG}); check the id")
    return path


def resolve_source(source: str) -> Path:
    """`user/repo[@revision]` -> the local snapshot folder (downloading it when needed)."""
    repo, rev = _split(source)
    return pull(repo, revision=rev)


def _metrics_rows(metrics: dict[str, Any]) -> list[str]:
    rows = []
    for name, m in metrics.items():
        v = m.get("value")
        if isinstance(v, dict):
            shown = ", ".join(f"{k}={x}" for k, x in v.items() if not isinstance(x, list))
        else:
            shown = f"{v:.4g}" if isinstance(v, (int, float)) else str(v)
        proto = "; ".join(f"{k}={x}" for k, x in (m.get("protocol") or {}).items())
        rows.append(f"| {name} | {shown} | {proto} | `{m.get('command', '')}` |")
    return rows


def write_model_card(folder: str | Path) -> Path:
    """README.md with Hub metadata (huggingface_hub's ModelCard), samples, recipe and measured metrics."""
    from huggingface_hub import ModelCard, ModelCardData

    folder = Path(folder)
    meta = read_config(folder)
    recipe, variant = meta.get("recipe", {}), meta["variant"]
    data = ModelCardData(
        library_name="ganhub", pipeline_tag="unconditional-image-generation", license="mit",
        tags=["gan", variant, "ganhub", "safetensors"],
        datasets=[HUB_DATASETS[recipe["dataset"]]] if recipe.get("dataset") in HUB_DATASETS else None,
    )
    cfg = meta.get("config", {})
    lines = [
        f"# ganhub · {variant}",
        "",
        f"A `{variant}` generator (plugin `{meta.get('plugin', {}).get('package', '?')}` "
        f"{meta.get('plugin', {}).get('version', '?')}) trained with ganhub: "
        f"{cfg.get('resolution', '?')}x{cfg.get('resolution', '?')} px, {cfg.get('channels', '?')} channel(s). "
        "`model.safetensors` holds the EMA generator.",
        "",
    ]
    if (folder / SAMPLES).exists():
        lines += ["![samples](samples.png)", "", f"Samples at step {meta.get('step')} (fixed latents, EMA generator).", ""]
    lines += ["## Use", "", "```bash", "pip install ganhub " + meta.get("plugin", {}).get("package", ""),
              "ganhub sample <user>/<repo> --n 64 --seed 0 --out grid.png", "```", "",
              "```python", "from ganhub.source import load_generator", "from ganhub.sample import sample, to_grid",
              "G = load_generator('<user>/<repo>').G", "to_grid(sample(G, 64, seed=0)).save('grid.png')", "```", "",
              "## Training recipe", "",
              f"- dataset: {recipe.get('dataset')}", f"- steps: {recipe.get('steps')} (G updates; batch size {recipe.get('batch_size')})",
              f"- seed: {recipe.get('seed')}", f"- command: `{recipe.get('command')}`",
              "- full config: see `config.json`", ""]
    if meta.get("metrics"):
        lines += ["## Metrics", "", "Each value was measured by the command next to it, under the protocol shown.", "",
                  "| metric | value | protocol | command |", "|---|---|---|---|", *_metrics_rows(meta["metrics"]), ""]
    card = ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + "\n".join(lines) + "\n")
    path = folder / "README.md"
    card.save(path)
    return path


def push(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
         revision: str | None = None) -> str:
    """Upload a run folder (without the resume checkpoint) to `repo_id`; returns the commit URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    read_config(folder)
    if not (folder / MODEL).is_file():
        raise HubError(f"{folder} has no {MODEL}; train it first")
    if not REPO_ID.match(repo_id) or "@" in repo_id:
        raise HubError(f"{repo_id!r} is not a Hub repo id; use user/repo (and --revision for a branch)")
    tok = _token(token)
    if not tok:
        raise HubError("no Hugging Face token: log in with `hf auth login`, set HF_TOKEN or pass --token")
    write_model_card(folder)
    api = HfApi(token=tok)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, revision=revision,
                                 allow_patterns=[CONFIG, MODEL, SAMPLES, "README.md"],
                                 commit_message=f"ganhub push ({json.loads((folder / CONFIG).read_text())['variant']})")
    except Exception as e:
        raise _explain(e, repo_id, tok, "push to") from None
    return str(getattr(info, "commit_url", info))


def add_cli(subparsers) -> None:
    s = subparsers.add_parser("push", help="upload a run folder to the Hugging Face Hub")
    s.add_argument("folder")
    s.add_argument("repo_id")
    s.add_argument("--private", action="store_true")
    s.add_argument("--token", help="defaults to $HF_TOKEN or your `hf auth login` token")
    s.add_argument("--revision", help="branch to push to (created if missing)")

    def run_push(args) -> int:
        print(push(args.folder, args.repo_id, private=args.private, token=args.token, revision=args.revision))
        return 0

    s.set_defaults(func=run_push)
    s = subparsers.add_parser("pull", help="download a ganhub repo into the Hugging Face cache")
    s.add_argument("repo_id")
    s.add_argument("--revision")
    s.add_argument("--token")

    def run_pull(args) -> int:
        print(pull(args.repo_id, revision=args.revision, token=args.token))
        return 0

    s.set_defaults(func=run_pull)
