"""Sampling, truncation, lerp/slerp interpolation, style mixing, grids and GIFs.

Determinism: latents come from a CPU torch.Generator seeded with `seed` (same z on every device), and
any randomness inside G (e.g. StyleGAN noise) runs under a forked RNG seeded from `seed`, so the same
seed gives the same images and sampling never disturbs the caller's RNG stream (training relies on it).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import nn

from ganhub.errors import GanhubError
from ganhub.variant import capabilities


def _device(G: nn.Module) -> torch.device:
    p = next(iter(G.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def z_dim(G: nn.Module) -> int:
    """Latent size; ganhub.variant.build_models records it on every generator it builds."""
    if not hasattr(G, "z_dim"):
        raise GanhubError("this generator has no z_dim attribute; build it with ganhub.variant.build_models")
    return int(G.z_dim)


def latents(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(int(seed)))


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type if device.type != "cpu" else "cuda"):
        torch.manual_seed(int(seed))
        yield


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, *, truncation: float = 1.0, seed: int = 0, batch_size: int = 256) -> torch.Tensor:
    """z (N, z_dim) -> images (N, C, H, W) in [-1, 1] (or points (N, 2)), on the CPU."""
    device = _device(G)
    if truncation != 1.0 and "mapping" not in capabilities(G):
        raise GanhubError("truncation needs a generator with a mapping network (e.g. stylegan-lite); use truncation 1.0")
    out = []
    with seeded(seed, device):
        for chunk in z.split(batch_size):
            chunk = chunk.to(device)
            if truncation != 1.0:
                w = G.w_avg.lerp(G.mapping(chunk), truncation)  # Karras et al. 2019, sec. 3.3: w' = w_avg + psi (w - w_avg)
                x = G.synthesis(w)
            else:
                x = G(chunk)
            out.append(x.float().clamp(-1, 1).cpu() if x.dim() == 4 else x.float().cpu())
    return torch.cat(out)


def sample(G: nn.Module, n: int, seed: int = 0, *, truncation: float = 1.0) -> torch.Tensor:
    """n samples for `seed`: the same seed gives the same images, whatever the batch size."""
    return generate(G, latents(n, z_dim(G), seed), truncation=truncation, seed=seed)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats (N, C, H, W) -> uint8 (N, C, H, W)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_pil(image: torch.Tensor) -> Image.Image:
    arr = to_uint8(image[None])[0].permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, "L" if arr.shape[2] == 1 else "RGB")


def to_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, scale: int = 1) -> Image.Image:
    """(N, C, H, W) in [-1, 1] -> one PIL grid; (N, 2) points -> a scatter plot."""
    if images.dim() == 2:
        return scatter(images)
    from torchvision.utils import make_grid

    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    grid = make_grid((images.clamp(-1, 1) + 1) / 2, nrow=nrow, padding=padding, pad_value=1.0)
    img = Image.fromarray((grid * 255).round().byte().permute(1, 2, 0).numpy())
    if images.shape[1] == 1:
        img = img.convert("L")
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def scatter(points: torch.Tensor, real: torch.Tensor | None = None, size: int = 320, extent: float = 5.5) -> Image.Image:
    """2-D points (N, 2) -> a scatter plot (real data in grey, samples in blue)."""
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)

    def px(p):
        return ((p[0] + extent) / (2 * extent) * size, (extent - p[1]) / (2 * extent) * size)

    for pts, color in ((real, (180, 180, 180)), (points, (31, 119, 180))):
        if pts is None:
            continue
        for p in pts[:4000].tolist():
            x, y = px(p)
            draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=color)
    return img


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985), the right path between Gaussian latents (White 2016)."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def interpolate(
    G: nn.Module, seed_a: int, seed_b: int, frames: int = 8, method: str = "slerp", *, truncation: float = 1.0
) -> torch.Tensor:
    """Frames (frames, C, H, W) walking the latent space from seed_a's sample to seed_b's."""
    if method not in ("lerp", "slerp"):
        raise GanhubError(f"interpolation method must be 'lerp' or 'slerp', got {method!r}")
    if frames < 2:
        raise GanhubError(f"need at least 2 frames, got {frames}")
    d = z_dim(G)
    za, zb = latents(1, d, seed_a), latents(1, d, seed_b)
    ts = torch.linspace(0, 1, frames).tolist()
    z = torch.cat([torch.lerp(za, zb, t) if method == "lerp" else slerp(za, zb, t) for t in ts])
    return generate(G, z, truncation=truncation, seed=seed_a)


@torch.no_grad()
def style_mix(G: nn.Module, row_seeds: list[int], col_seeds: list[int], crossover: int | None = None,
              *, truncation: float = 1.0) -> Image.Image:
    """Karras et al. 2019, fig. 3: rows take coarse styles (layers < crossover) from `row_seeds`,
    columns take fine styles from `col_seeds`. The first row/column show the sources themselves."""
    if "mapping" not in capabilities(G):
        raise GanhubError("style mixing needs a generator with a mapping network (e.g. stylegan-lite)")
    crossover = G.num_ws // 2 if crossover is None else int(crossover)
    if not 0 < crossover < G.num_ws:
        raise GanhubError(f"crossover must be between 1 and {G.num_ws - 1}, got {crossover}")
    device, d = _device(G), z_dim(G)

    def ws(seeds):
        z = torch.cat([latents(1, d, s) for s in seeds]).to(device)
        return G.w_avg.lerp(G.mapping(z), truncation)[:, None].repeat(1, G.num_ws, 1)

    w_rows, w_cols = ws(row_seeds), ws(col_seeds)
    with seeded(0, device):
        tiles = [torch.full_like(G.synthesis(w_rows[:1]), 1.0)]  # blank top-left corner
        tiles += [G.synthesis(w_cols[j : j + 1]) for j in range(len(col_seeds))]
        for i in range(len(row_seeds)):
            tiles.append(G.synthesis(w_rows[i : i + 1]))
            for j in range(len(col_seeds)):
                mixed = w_rows[i : i + 1].clone()
                mixed[:, crossover:] = w_cols[j : j + 1, crossover:]
                tiles.append(G.synthesis(mixed))
    return to_grid(torch.cat(tiles).float().clamp(-1, 1).cpu(), nrow=len(col_seeds) + 1)


def gif_bytes(frames: torch.Tensor, duration_ms: int = 120, scale: int = 4) -> bytes:
    """Frames (T, C, H, W) -> an animated GIF that plays forward then back (loops forever)."""
    pil = [to_pil(f).resize((f.shape[-1] * scale, f.shape[-2] * scale), Image.NEAREST).convert("P") for f in frames]
    pil = pil + pil[-2:0:-1]
    buf = io.BytesIO()
    pil[0].save(buf, format="GIF", save_all=True, append_images=pil[1:], duration=duration_ms, loop=0)
    return buf.getvalue()


def save_images(images: torch.Tensor, out: str | Path, nrow: int | None = None) -> Path:
    """PATH ending in .png: one grid; otherwise a directory of PNGs 000000.png, ... (what FID tools read)."""
    out = Path(out)
    if out.suffix.lower() == ".png":
        out.parent.mkdir(parents=True, exist_ok=True)
        to_grid(images, nrow=nrow).save(out)
        return out
    if images.dim() == 2:
        raise GanhubError("point samples can only be written as a .png scatter plot; give an output path ending in .png")
    out.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        to_pil(img).save(out / f"{i:06d}.png")
    return out
