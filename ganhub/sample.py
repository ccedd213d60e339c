"""Sampling, truncation, lerp/slerp interpolation, style mixing, class grids, image files and GIFs.

Determinism: latents come from a CPU torch.Generator seeded with `seed` (same z on every device), drawn
in fixed blocks of LATENT_BLOCK numbers so any n can be streamed; class labels (conditional generators,
when none is given) come from a second generator seeded from `seed`; any randomness inside G (e.g.
StyleGAN noise) runs under a forked RNG seeded per chunk of `batch_size` images (the first chunk with
`seed` itself). So the same seed gives the same images, and sampling never disturbs the caller's RNG
stream (training relies on it).

Memory: `write_samples` streams a directory of PNGs chunk by chunk (bounded memory for any n); a grid
holds at most MAX_GRID images (MAX_SCATTER points); `sample` returns a tensor and refuses sizes that
would not fit in MAX_IN_MEMORY_BYTES.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from ganhub.errors import ConfigError, GanhubError
from ganhub.variant import capabilities

MAX_GRID = 1024  # images in one grid PNG (32 x 32 tiles; 1024 px-wide 32 px images -> ~1100 x 1100 px)
MAX_SCATTER = 4000  # points in one scatter plot (more would hide each other)
MAX_IN_MEMORY_BYTES = 2 * 2**30  # `sample` returns a tensor: above this, stream with write_samples/iter_samples
MAX_SEED = 2**63 - 1
TRUNCATION_RANGE = (-1.0, 2.0)  # psi: 1 = off, < 1 trades diversity for quality, < 0 mirrors around w_avg
LATENT_BLOCK = 2**22  # numbers per latent block (16 MiB); n * z_dim up to this is one torch.randn call
BATCH = 256  # images per forward pass


class OutputError(GanhubError):
    """An output path that cannot be written (a file where a folder is needed, read-only, disk full)."""


# ---------------------------------------------------------------------------------------------------------
# Checks (every public function validates before any work)


def _check_int(name: str, value, lo: int, hi: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer from {lo} to {hi}, got {value!r}; {what}")
    if not lo <= int(value) <= hi:
        raise ConfigError(f"{name} must be from {lo} to {hi}, got {value}; {what}")
    return int(value)


def check_seed(seed) -> int:
    return _check_int("seed", seed, 0, MAX_SEED, "pick another seed")


def check_n(n, hi: int = 2**40) -> int:
    return _check_int("the number of samples", n, 1, hi, "ask for fewer samples")


def check_truncation(truncation, G: nn.Module | None = None) -> float:
    lo, hi = TRUNCATION_RANGE
    try:
        psi = float(truncation)
    except (TypeError, ValueError):
        raise ConfigError(f"truncation must be a number from {lo:g} to {hi:g} (1 = off), got {truncation!r}") from None
    if not (math.isfinite(psi) and lo <= psi <= hi):
        raise ConfigError(f"truncation must be a number from {lo:g} to {hi:g} (1 = off), got {truncation!r}")
    if G is not None and psi != 1.0 and "mapping" not in capabilities(G):
        raise ConfigError("truncation needs a generator with a mapping network (e.g. stylegan-lite); use truncation 1.0")
    return psi


def device_of(G: nn.Module) -> torch.device:
    """Where G computes: its parameters' device (the CPU for a parameter-free G)."""
    p = next(iter(G.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def z_dim(G: nn.Module) -> int:
    """Latent size; ganhub.variant.build_models records it on every generator it builds."""
    d = getattr(G, "z_dim", None)
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise GanhubError("this generator has no valid z_dim attribute; build it with ganhub.variant.build_models")
    return d


def num_classes(G: nn.Module) -> int:
    """0 for an unconditional generator; else G is called as G(z, c) with c (B,) int64 in [0, num_classes)."""
    k = getattr(G, "num_classes", 0)
    return int(k) if isinstance(k, int) and not isinstance(k, bool) and k > 0 else 0


# ---------------------------------------------------------------------------------------------------------
# Latents and labels


def _blocks(n: int, dim: int, seed: int) -> Iterator[torch.Tensor]:
    """The latents of `seed` as consecutive blocks of rows (n * dim <= LATENT_BLOCK: one block)."""
    g = torch.Generator().manual_seed(seed)
    rows = max(1, LATENT_BLOCK // dim)
    for start in range(0, n, rows):
        yield torch.randn(min(rows, n - start), dim, generator=g)


def _label_seed(seed: int) -> int:
    # A separate stream: labels drawn from the latents' own generator would correlate with z.
    return int(np.random.SeedSequence([seed, 0x6C61_6265]).generate_state(1, np.uint64)[0])


def _label_blocks(n: int, k: int, seed: int) -> Iterator[torch.Tensor]:
    g = torch.Generator().manual_seed(_label_seed(seed))
    rows = 2**20
    for start in range(0, n, rows):
        yield torch.randint(k, (min(rows, n - start),), generator=g)


def _rechunk(blocks: Iterator[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """Consecutive blocks -> consecutive chunks of `size` rows (the last may be shorter)."""
    buf: list[torch.Tensor] = []
    have = 0
    for b in blocks:
        buf.append(b)
        have += len(b)
        while have >= size:
            cat = torch.cat(buf)
            yield cat[:size]
            buf, have = [cat[size:]], have - size
    if have:
        yield torch.cat(buf)


def latents(n: int, dim: int, seed: int) -> torch.Tensor:
    """(n, dim) N(0, 1) latents of `seed` (any seed torch.manual_seed takes); the first rows of a longer
    draw are not the same rows."""
    seed = _check_int("seed", seed, -(2**63), 2**64 - 1, "pick another seed")
    return torch.cat(list(_blocks(check_n(n), int(dim), seed)))


def random_labels(n: int, k: int, seed: int) -> torch.Tensor:
    """(n,) int64 uniform in [0, k): the labels `sample` gives a conditional generator when none is asked."""
    return torch.cat(list(_label_blocks(check_n(n), int(k), check_seed(seed))))


def _check_labels(G: nn.Module, n: int, labels) -> torch.Tensor | None:
    """labels: None, an int class or an (n,) sequence/tensor of classes -> (n,) int64 or None (= random)."""
    k = num_classes(G)
    if labels is None:
        return None
    if k == 0:
        raise ConfigError(f"this generator is unconditional (no classes); drop the class label {_short(labels)}")
    if isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        if not 0 <= int(labels) < k:
            raise ConfigError(f"class must be from 0 to {k - 1} for this generator, got {int(labels)}")
        return torch.full((n,), int(labels), dtype=torch.int64)
    try:
        c = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"labels must be a class number or {n} class numbers, got {_short(labels)}") from None
    if c.dtype.is_floating_point or c.dtype.is_complex or c.dtype == torch.bool or c.shape != (n,):
        raise ConfigError(f"labels must be {n} integer class numbers (shape ({n},)), got {c.dtype} of shape {tuple(c.shape)}")
    if n and (int(c.min()) < 0 or int(c.max()) >= k):
        raise ConfigError(f"labels must be from 0 to {k - 1} for this generator, got values {int(c.min())}..{int(c.max())}")
    return c.to(torch.int64).cpu()


def _short(x) -> str:
    s = repr(x)
    return s if len(s) <= 40 else s[:37] + "..."


# ---------------------------------------------------------------------------------------------------------
# Generation


@contextlib.contextmanager
def rng_kept(device: torch.device) -> Iterator[None]:
    """Whatever runs inside leaves torch's global RNG as it found it: the CPU's and `device`'s (CUDA, MPS)."""
    on_cpu = device.type == "cpu"  # fork_rng always forks the CPU's; devices=[] then forks no other
    accelerator = "cuda" if on_cpu else device.type
    with torch.random.fork_rng(devices=[] if on_cpu else [device], device_type=accelerator):
        yield


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    with rng_kept(device):
        torch.manual_seed(int(seed))
        yield


def _chunk_seed(seed: int, j: int) -> int:
    return seed if j == 0 else int(np.random.SeedSequence([seed, j]).generate_state(1, np.uint64)[0] >> 1)


@torch.no_grad()
def _forward(G: nn.Module, z: torch.Tensor, c: torch.Tensor | None, psi: float, device: torch.device) -> torch.Tensor:
    """One chunk z (B, z_dim) [+ c (B,)] -> (B, C, H, W) clamped to [-1, 1] (or points (B, 2)), on the CPU."""
    z = z.to(device)
    args = (z,) if c is None else (z, c.to(device))
    if psi != 1.0:
        w = G.w_avg.lerp(G.mapping(*args), psi)  # Karras et al. 2019, sec. 3.3: w' = w_avg + psi (w - w_avg)
        x = G.synthesis(w)
    else:
        x = G(*args)
    return x.float().clamp(-1, 1).cpu() if x.dim() == 4 else x.float().cpu()


def _iter_generate(G, z_chunks, c_chunks, psi: float, seed: int) -> Iterator[torch.Tensor]:
    device = device_of(G)
    for j, (z, c) in enumerate(zip(z_chunks, c_chunks)):
        with seeded(_chunk_seed(seed, j), device):
            yield _forward(G, z, c, psi, device)


def generate(G: nn.Module, z: torch.Tensor, c=None, *, truncation: float = 1.0, seed: int = 0,
             batch_size: int = BATCH) -> torch.Tensor:
    """z (N, z_dim) [+ classes c: int, (N,) or None = random from `seed`] -> (N, C, H, W) in [-1, 1]
    (or points (N, 2)), on the CPU. G's internal noise is seeded per chunk of `batch_size`."""
    psi, seed = check_truncation(truncation, G), check_seed(seed)
    batch_size = _check_int("batch_size", batch_size, 1, 2**20, "use a smaller batch")
    if z.dim() != 2 or z.shape[1] != z_dim(G):
        raise ConfigError(f"latents must have shape (N, {z_dim(G)}), got {tuple(z.shape)}")
    n, k = len(z), num_classes(G)
    c = _check_labels(G, n, c)
    if k and c is None:
        c = random_labels(n, k, seed) if n else torch.zeros(0, dtype=torch.int64)
    c_chunks = c.split(batch_size) if c is not None else [None] * math.ceil(n / batch_size)
    out = list(_iter_generate(G, z.split(batch_size), c_chunks, psi, seed))
    return torch.cat(out) if out else torch.zeros(0)


def iter_samples(G: nn.Module, n: int, seed: int = 0, *, truncation: float = 1.0, labels=None,
                 batch_size: int = BATCH) -> Iterator[torch.Tensor]:
    """The n samples of `sample(G, n, seed, ...)` as consecutive chunks of `batch_size`, in bounded memory."""
    n, seed, psi = check_n(n), check_seed(seed), check_truncation(truncation, G)
    batch_size = _check_int("batch_size", batch_size, 1, 2**20, "use a smaller batch")
    k, d = num_classes(G), z_dim(G)
    if isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        _check_labels(G, 1, labels)
        c_chunks = (torch.full((min(batch_size, n - s),), int(labels), dtype=torch.int64) for s in range(0, n, batch_size))
    elif labels is not None:
        c_chunks = _check_labels(G, n, labels).split(batch_size)
    elif k:
        c_chunks = _rechunk(_label_blocks(n, k, seed), batch_size)
    else:
        c_chunks = iter(lambda: None, 0)  # endless Nones
    return _iter_generate(G, _rechunk(_blocks(n, d, seed), batch_size), c_chunks, psi, seed)


def sample(G: nn.Module, n: int, seed: int = 0, truncation: float = 1.0, labels=None) -> torch.Tensor:
    """n samples for `seed` (labels: a class, (n,) classes, or None = uniform random classes from `seed`
    for a conditional generator). Same seed, same images. Refuses outputs above MAX_IN_MEMORY_BYTES."""
    chunks, have = [], 0
    for x in iter_samples(G, n, seed, truncation=truncation, labels=labels):
        if not chunks and x[0].numel() * 4 * n > MAX_IN_MEMORY_BYTES:
            need = x[0].numel() * 4 * n / 2**30
            raise ConfigError(f"{n} samples need {need:.1f} GiB in memory (limit {MAX_IN_MEMORY_BYTES / 2**30:.0f} GiB); "
                              "write them to a directory instead (ganhub sample ... --out DIR streams them)")
        chunks.append(x)
        have += len(x)
    return torch.cat(chunks)


def class_grid(G: nn.Module, per_class: int, seed: int = 0, *, truncation: float = 1.0) -> Image.Image:
    """One row per class, `per_class` columns; column j uses the same latent in every row (class changes
    down a column, everything else stays)."""
    k = num_classes(G)
    if k == 0:
        raise ConfigError("class grids need a conditional generator (num_classes > 0); this one is unconditional")
    per_class = _check_int("per_class", per_class, 1, MAX_GRID, "ask for fewer images per class")
    if k * per_class > MAX_GRID:
        raise ConfigError(f"a class grid holds at most {MAX_GRID} images: {k} classes x {per_class} is too many; "
                          f"use per_class <= {max(1, MAX_GRID // k)}")
    z = latents(per_class, z_dim(G), seed).repeat(k, 1)
    c = torch.arange(k).repeat_interleave(per_class)
    return to_grid(generate(G, z, c, truncation=truncation, seed=seed), nrow=per_class)


# ---------------------------------------------------------------------------------------------------------
# Images


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats (N, C, H, W) -> uint8 (N, C, H, W)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_pil(image: torch.Tensor) -> Image.Image:
    arr = to_uint8(image[None])[0].permute(1, 2, 0).numpy()
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, "L" if arr.shape[2] == 1 else "RGB")


def to_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, scale: int = 1) -> Image.Image:
    """(N, C, H, W) in [-1, 1] -> one PIL grid (N <= MAX_GRID); (N, 2) points -> a scatter plot."""
    if images.dim() == 2:
        return scatter(images)
    if len(images) > MAX_GRID:
        raise ConfigError(f"a grid holds at most {MAX_GRID} images, got {len(images)}; write a directory instead")
    from torchvision.utils import make_grid

    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    grid = make_grid((images.clamp(-1, 1) + 1) / 2, nrow=nrow, padding=padding, pad_value=1.0)
    img = Image.fromarray((grid * 255).round().byte().permute(1, 2, 0).numpy())
    if images.shape[1] == 1:
        img = img.convert("L")
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def scatter(points: torch.Tensor, real: torch.Tensor | None = None, size: int = 320, extent: float = 5.5) -> Image.Image:
    """2-D points (N, 2) -> a scatter plot (real data in grey, samples in blue; at most MAX_SCATTER each)."""
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)

    def px(p):
        return ((p[0] + extent) / (2 * extent) * size, (extent - p[1]) / (2 * extent) * size)

    for pts, color in ((real, (180, 180, 180)), (points, (31, 119, 180))):
        if pts is None:
            continue
        for p in pts[:MAX_SCATTER].tolist():
            x, y = px(p)
            draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=color)
    return img


# ---------------------------------------------------------------------------------------------------------
# Latent walks and style mixing


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985), the right path between Gaussian latents (White 2016)."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def _one_label(G: nn.Module, label, seed: int) -> torch.Tensor | None:
    """A conditional G's class for a walk or a style-mix source: `label`, else `seed`'s random class."""
    if label is None:
        return random_labels(1, num_classes(G), seed) if num_classes(G) else None
    return _check_labels(G, 1, label)


def interpolate(G: nn.Module, seed_a: int, seed_b: int, frames: int = 8, method: str = "slerp", *,
                truncation: float = 1.0, label=None) -> torch.Tensor:
    """Frames (frames, C, H, W) walking the latent space from seed_a's sample to seed_b's (a conditional
    G keeps one class throughout: `label`, or seed_a's)."""
    if method not in ("lerp", "slerp"):
        raise ConfigError(f"interpolation method must be 'lerp' or 'slerp', got {method!r}")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or not 2 <= frames <= MAX_GRID:
        raise ConfigError(f"need at least 2 frames and at most {MAX_GRID}, got {frames!r}")
    d = z_dim(G)
    za, zb = latents(1, d, seed_a), latents(1, d, seed_b)
    ts = torch.linspace(0, 1, frames).tolist()
    z = torch.cat([torch.lerp(za, zb, t) if method == "lerp" else slerp(za, zb, t) for t in ts])
    c = _one_label(G, label, seed_a)
    return generate(G, z, None if c is None else c.expand(frames), truncation=truncation, seed=seed_a)


@torch.no_grad()
def style_mix(G: nn.Module, row_seeds: Sequence[int], col_seeds: Sequence[int], crossover: int | None = None,
              *, truncation: float = 1.0, label=None) -> Image.Image:
    """Karras et al. 2019, fig. 3: rows take coarse styles (layers < crossover) from `row_seeds`,
    columns take fine styles from `col_seeds`. The first row/column show the sources themselves.
    A conditional G maps each source with `label`, or with that seed's random class."""
    if "mapping" not in capabilities(G):
        raise ConfigError("style mixing needs a generator with a mapping network (e.g. stylegan-lite)")
    if not row_seeds or not col_seeds or (len(row_seeds) + 1) * (len(col_seeds) + 1) > MAX_GRID:
        raise ConfigError(f"style mixing needs 1 or more row and column seeds, at most {MAX_GRID} tiles in all")
    crossover = G.num_ws // 2 if crossover is None else _check_int("crossover", crossover, 1, max(1, G.num_ws - 1),
                                                                   f"this generator has {G.num_ws} style layers")
    if not 0 < crossover < G.num_ws:
        raise ConfigError(f"crossover must be between 1 and {G.num_ws - 1}, got {crossover}")
    psi = check_truncation(truncation, G)
    device, d = device_of(G), z_dim(G)

    def ws(seeds):
        seeds = [check_seed(s) for s in seeds]
        z = torch.cat([latents(1, d, s) for s in seeds]).to(device)
        if num_classes(G):
            c = torch.cat([_one_label(G, label, s) for s in seeds]).to(device)
            w = G.mapping(z, c)
        else:
            w = G.mapping(z)
        return G.w_avg.lerp(w, psi)[:, None].repeat(1, G.num_ws, 1)

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


# ---------------------------------------------------------------------------------------------------------
# Writing files


def _os_error(e: OSError, path: Path) -> OutputError:
    why = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
           errno.EROFS: "the place is read-only", errno.EACCES: "permission denied",
           errno.EPERM: "permission denied"}.get(e.errno, e.strerror or type(e).__name__)
    return OutputError(f"cannot write {path}: {why}; choose another --out")


def _is_grid_path(out: Path) -> bool:
    return out.suffix.lower() == ".png"


def _out_path(out: str | Path) -> Path:
    if not str(out).strip():  # Path("") is ".": never write into the working directory by accident
        raise OutputError("no output path given; use a path ending in .png for a grid, or a directory")
    return Path(out)


def _prepare_dir(out: Path, target: Path | None = None) -> None:
    """mkdir -p `out` (the folder of `target` when writing a grid) or one line saying why not."""
    target = target or out
    if target == out and out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file, not a directory; give a new directory or a path ending in .png")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{target} cannot be created: a file stands in its path; choose another --out") from None
    except OSError as e:
        raise _os_error(e, target) from None


def save_grid(img: Image.Image, out: str | Path) -> Path:
    """Write a grid image (e.g. from class_grid or style_mix) as PNG, atomically: on any failure the previous
    file stays whole, and the error is one line (a file in the path, read-only place, full disk)."""
    from ganhub.run import atomic_write

    out = _out_path(out)
    if out.is_dir():
        raise OutputError(f"{out} is a directory; give a file path ending in .png, or a directory without .png")
    _prepare_dir(out.parent, out)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    try:
        atomic_write(out, buf.getvalue())
    except OSError as e:
        raise _os_error(e, out) from None
    return out


_write_grid = save_grid  # the name cli.py used first


def _write_dir(chunks: Iterator[torch.Tensor], out: Path, n: int) -> Path:
    width = max(6, len(str(n - 1)))  # 000000.png ... ; names sort in sample order for any n
    i = 0
    first = True
    for x in chunks:
        if first:
            if x.dim() == 2:
                raise ConfigError("point samples can only be written as a .png scatter plot; give an output path ending in .png")
            _prepare_dir(out)
            first = False
        for img in x:
            path = out / f"{i:0{width}d}.png"
            try:
                to_pil(img).save(path)
            except OSError as e:
                path.unlink(missing_ok=True)  # no truncated PNG left behind
                raise _os_error(e, path) from None
            i += 1
    return out


def save_images(images: torch.Tensor, out: str | Path, nrow: int | None = None) -> Path:
    """PATH ending in .png: one grid (at most MAX_GRID images); otherwise a directory of PNGs 000000.png, ...
    (what FID tools read)."""
    out = _out_path(out)
    if _is_grid_path(out):
        return save_grid(to_grid(images, nrow=nrow), out)
    return _write_dir(iter(images.split(BATCH)), out, len(images))


def write_samples(G: nn.Module, n: int, seed: int, out: str | Path, *, truncation: float = 1.0, labels=None) -> Path:
    """`sample(G, n, seed, ...)` written to `out`: a .png grid (at most MAX_GRID images, MAX_SCATTER points;
    checked before any work) or a directory of PNGs streamed chunk by chunk (any n, bounded memory)."""
    out = _out_path(out)
    n = check_n(n)
    if _is_grid_path(out):
        limit = MAX_GRID
        if MAX_GRID < n <= MAX_SCATTER and sample(G, 1, seed, truncation).dim() == 2:
            limit = MAX_SCATTER  # 2-D points: a scatter plot holds more
        if n > limit:
            raise ConfigError(f"a .png grid holds at most {MAX_GRID} images ({MAX_SCATTER} points), got --n {n}; "
                              "give a directory (a path without .png) to write one PNG per sample")
        if out.is_dir():
            raise OutputError(f"{out} is a directory; give a file path ending in .png, or a directory without .png")
        return save_grid(to_grid(sample(G, n, seed, truncation, labels)), out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file, not a directory; give a new directory or a path ending in .png")
    return _write_dir(iter_samples(G, n, seed, truncation=truncation, labels=labels), out, n)
