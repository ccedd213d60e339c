"""Datasets -> uint8 tensors (N, C, H, W) at the model's resolution, with their class labels if any;
`batch(idx, device)` gives (floats in [-1, 1], labels (B,) int64 or None).

Built-in names: fashion-mnist, mnist, cifar10 (images, 10 classes each) and ring8, grid25 (2-D toy
mixtures; the label is the mode). Anything else is a folder of images or a .zip of images:
  - one subfolder per class (`root/cat/*.png`, `root/dog/*.png`) -> labelled; class ids follow the sorted
    subfolder names, like torchvision's ImageFolder. A single wrapping folder (a zip of `root/`) is looked
    through.
  - images directly in the folder (or some at the top and some in subfolders) -> unlabelled.
Files without an image extension and hidden ones (.DS_Store, ._x.png, .ipynb_checkpoints/, __MACOSX/) are
ignored; unreadable images are skipped and counted (`skipped`); images of any size are centre-cropped to a
square and resized. Zips are read in memory, never extracted, and refused outright when hostile (escaping
paths, symlinks, encryption, too many members, absurd sizes, bombs). A dataset that would not fit in half
the machine's memory is refused before anything is decoded.
"""

from __future__ import annotations

import functools
import gzip
import io
import math
import os
import stat
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganhub.errors import DatasetError

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian package `dataset-fashion-mnist`
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
FMNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# Limits for user uploads. A user's own folder may be large; an archive from a browser should not be.
MAX_ZIP_MEMBERS = 200_000
MAX_ZIP_TOTAL_BYTES = 4 * 2**30  # sum of uncompressed sizes
MAX_ZIP_RATIO = 200  # uncompressed / compressed for one member; real images compress far less
MAX_IMAGE_PIXELS = 64 * 2**20  # PIL's bomb guard, lowered from 89M pixels: we never need more than 4096^2
MAX_FOLDER_FILES = MAX_ZIP_MEMBERS  # image files in a folder (without --limit): N x C x R x R bytes in RAM
MAX_FILE_BYTES = 256 * 2**20  # one image file; anything larger is skipped (counted) rather than read
MAX_FOLDER_ENTRIES = 1_000_000  # files and folders walked in a folder: `/` or a home folder is a mistake
MEMORY_SHARE = 0.5  # a dataset may take at most this share of the machine's RAM (uint8 images are kept whole)


def cache_dir() -> Path:
    return Path(os.environ.get("GANHUB_CACHE", Path.home() / ".cache" / "ganhub"))


@dataclass
class ImageDataset:
    name: str
    images: torch.Tensor  # uint8 (N, C, H, W) for images; float32 (N, 2) for points
    labels: torch.Tensor | None = None  # int64 (N,) in [0, num_classes), or None when unlabelled
    kind: str = "image"  # "image" or "points"
    skipped: int = 0  # unreadable files skipped while loading a folder or zip
    class_names: tuple[str, ...] = ()  # class id -> name; () when unlabelled
    modes: torch.Tensor | None = field(default=None, repr=False)  # toy mixtures: centres (M, 2)
    mode_std: float = 0.0

    def __post_init__(self) -> None:
        if self.labels is None:
            self.class_names = ()
            return
        self.labels = self.labels.long()
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels {tuple(self.labels.shape)} do not match {len(self.images)} images")
        if len(self.labels) and not self.class_names:
            self.class_names = tuple(str(i) for i in range(int(self.labels.max()) + 1))

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        """0 when unlabelled (the convention of BaseConfig.num_classes)."""
        return len(self.class_names) if self.labels is not None else 0

    def batch(
        self, idx: torch.Tensor, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B,) -> (images (B, C, H, W) float32 in [-1, 1] (points: (B, 2)), labels (B,) int64 | None)."""
        x = self.images[idx].to(device, non_blocking=True)
        if self.kind != "points":
            x = x.float().div_(127.5).sub_(1.0)
        y = None if self.labels is None else self.labels[idx].to(device, non_blocking=True)
        return x, y


def physical_memory() -> int | None:
    """Bytes of RAM, or None where the OS does not say (then no memory check is made)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(name: str, n: int, channels: int, resolution: int) -> None:
    """Refuse, before any decoding, a dataset whose uint8 images would not fit in memory."""
    need, ram = n * channels * resolution * resolution, physical_memory()
    if ram and need > MEMORY_SHARE * ram:
        raise DatasetError(
            f"{name} at {resolution} px needs {need / 2**30:.1f} GiB of memory ({n:,} x {channels} x {resolution} x "
            f"{resolution} bytes), over {MEMORY_SHARE:.0%} of this machine's {ram / 2**30:.0f} GiB; use --limit or a lower resolution"
        )


def check_classes(ds: ImageDataset, num_classes: int) -> None:
    """Refuse a conditional config whose dataset has no labels or fewer classes than asked for."""
    if num_classes <= 0:
        return
    if ds.labels is None:
        raise DatasetError(
            f"num_classes={num_classes} needs labelled data and {ds.name} has none; "
            "use one subfolder per class, a built-in dataset, or num_classes=0"
        )
    if ds.num_classes != num_classes:
        raise DatasetError(
            f"num_classes={num_classes} but {ds.name} has {ds.num_classes} classes; set num_classes={ds.num_classes}"
        )


def to_uint8_images(x: torch.Tensor, resolution: int, channels: int) -> torch.Tensor:
    """(N, C, H, W) uint8 of any size/channels -> (N, channels, resolution, resolution) uint8.

    Resizing is bilinear with antialiasing (28 -> 32 for the MNISTs); metrics use the same function.
    """
    if x.shape[1] != channels:
        if channels == 1:  # ITU-R 601 luma, as PIL's convert("L")
            w = torch.tensor([0.299, 0.587, 0.114])[: x.shape[1]]
            x = (x.float() * w[None, :, None, None] / w.sum()).sum(1, keepdim=True).round().clamp(0, 255).byte()
        else:
            x = x[:, :1].expand(-1, channels, -1, -1)
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        out = []
        for chunk in x.split(4096):
            y = F.interpolate(chunk.float(), size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
            out.append(y.round().clamp(0, 255).byte())
        x = torch.cat(out)
    return x.contiguous()


def _read_idx(path: Path) -> np.ndarray:
    """IDX format (LeCun): magic (0, 0, dtype, ndim), big-endian dims, raw data. Debian ships .gz files,
    which torchvision's readers do not accept in place, hence these few lines."""
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


@functools.lru_cache(maxsize=4)
def load_fashion_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images (N, 28, 28), int64 labels (N,)) from Debian's files, else torchvision's download."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images, labels = DEBIAN_FMNIST / f"{prefix}-images-idx3-ubyte.gz", DEBIAN_FMNIST / f"{prefix}-labels-idx1-ubyte.gz"
    if images.exists() and labels.exists():
        return torch.from_numpy(_read_idx(images).copy()), torch.from_numpy(_read_idx(labels).astype(np.int64))
    ds = _torchvision("FashionMNIST", split)
    return ds.data, ds.targets


def _torchvision(cls_name: str, split: str):
    import torchvision.datasets as tvd

    root = cache_dir() / "torchvision"
    try:
        return getattr(tvd, cls_name)(str(root), train=split == "train", download=True)
    except Exception as e:  # URLError, RuntimeError, ...: the download is the only thing that can fail here
        hint = " (or `apt-get install dataset-fashion-mnist`)" if cls_name == "FashionMNIST" else ""
        raise DatasetError(
            f"could not download {cls_name} into {root}: {type(e).__name__}; connect to the internet once{hint}"
        ) from None


def toy_points(name: str, n: int = 50_000, seed: int = 0) -> ImageDataset:
    """Ring of 8 Gaussians (radius 2, std 0.02) or 5x5 grid of 25 (spacing 2, std 0.05): the
    mode-collapse benchmarks of Metz et al. 2017 and Srivastava et al. 2017 (VEEGAN)."""
    if name == "ring8":
        angles = torch.arange(8) * (2 * math.pi / 8)
        modes, std = torch.stack([2 * angles.cos(), 2 * angles.sin()], 1), 0.02
    else:
        g = torch.arange(-4.0, 5.0, 2.0)
        modes, std = torch.cartesian_prod(g, g), 0.05
    gen = torch.Generator().manual_seed(seed)
    which = torch.randint(len(modes), (n,), generator=gen)
    points = modes[which] + std * torch.randn(n, 2, generator=gen)
    names = tuple(f"mode {i}" for i in range(len(modes)))
    return ImageDataset(name, points.float(), which, kind="points", class_names=names, modes=modes.float(), mode_std=std)


def _decode(data: bytes, channels: int) -> torch.Tensor | None:
    """bytes -> uint8 (C, S, S) centre-cropped square, or None if not a readable image."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's advice about palettes etc. is not the user's concern
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.draft("RGB", (512, 512))  # JPEG: decode at reduced size when the image is huge
                im = im.convert("L" if channels == 1 else "RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise
    except Exception:
        return None
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if s > 256:
        im = im.resize((256, 256), Image.BILINEAR, reducing_gap=2.0)
    arr = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).reshape(arr.shape[0], arr.shape[1], -1).permute(2, 0, 1)


def class_layout(paths: list[str]) -> tuple[list[int] | None, tuple[str, ...]]:
    """Relative paths ("a/b.png") -> (class id per path, class names), or (None, ()) when unlabelled.

    Labelled when every image sits in a subfolder and there are at least two of them, after looking
    through a single folder that wraps everything (a zip of `root/`). The class is the first folder
    level below that; deeper folders belong to their top-level class, as in torchvision's ImageFolder.
    """
    parts = [[p for p in path.replace("\\", "/").split("/") if p] for path in paths]
    depth = 0
    while parts and all(len(p) > depth + 1 for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1  # a wrapping folder shared by everything
    if not parts or any(len(p) <= depth + 1 for p in parts):
        return None, ()  # some images at the top: a flat folder
    names = tuple(sorted({p[depth] for p in parts}))
    index = {n: i for i, n in enumerate(names)}
    return [index[p[depth]] for p in parts], names


def _load_files(
    paths: list[str], read, name: str, resolution: int, channels: int, limit: int | None
) -> ImageDataset:
    """Decode `read(path)` for each path (bytes, or None when too large), labelled by `class_layout`."""
    from PIL import Image

    ids, class_names = class_layout(paths)
    order = list(range(len(paths)))
    if limit and ids is not None:  # a limited labelled set takes every class in turn, not the first few
        rank: dict[int, int] = {}
        per_class: dict[int, int] = {}
        for i in order:
            rank[i] = per_class.get(ids[i], 0)
            per_class[ids[i]] = rank[i] + 1
        order.sort(key=lambda i: (rank[i], ids[i]))
    images, labels, skipped = [], [], 0
    for i in order:
        data = read(paths[i])
        try:
            img = None if data is None else _decode(data, channels)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise DatasetError(
                f"{name}: {paths[i]} is a decompression bomb (more than {MAX_IMAGE_PIXELS:,} pixels); remove it and retry"
            ) from None
        if img is None:
            skipped += 1
            continue
        images.append(to_uint8_images(img[None], resolution, channels)[0])
        labels.append(-1 if ids is None else ids[i])
        if limit and len(images) >= limit:
            break
    if not images:
        raise DatasetError(f"{name}: no readable images found ({skipped} files skipped); use PNG or JPEG files")
    if ids is None:
        return ImageDataset(name, torch.stack(images), None, skipped=skipped)
    y = torch.tensor(labels, dtype=torch.int64)
    empty = [class_names[c] for c in range(len(class_names)) if not (y == c).any()]
    if empty and not limit:
        raise DatasetError(
            f"{name}: class folder {empty[0]!r} has no readable images; add images to it or remove it"
        )
    return ImageDataset(name, torch.stack(images), y, skipped=skipped, class_names=class_names)


def check_zip(zf: zipfile.ZipFile, name: str) -> list[zipfile.ZipInfo]:
    """Refuse hostile archives before reading anything. Returns the image members."""
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise DatasetError(f"{name}: {len(infos):,} members is more than the {MAX_ZIP_MEMBERS:,} allowed; split the archive")
    total = 0
    for info in infos:
        path = info.filename.replace("\\", "/")
        if path.startswith("/") or (len(path) > 1 and path[1] == ":") or ".." in path.split("/"):
            raise DatasetError(f"{name}: member {info.filename!r} escapes the archive; refusing this zip")
        if info.flag_bits & 0x1:
            raise DatasetError(f"{name}: member {info.filename!r} is encrypted; re-create the zip without a password")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DatasetError(f"{name}: member {info.filename!r} is a symlink; refusing this zip")
        total += info.file_size
        if info.compress_size and info.file_size / info.compress_size > MAX_ZIP_RATIO and info.file_size > 2**20:
            raise DatasetError(f"{name}: member {info.filename!r} expands {info.file_size // info.compress_size}x; refusing a zip bomb")
    if total > MAX_ZIP_TOTAL_BYTES:
        raise DatasetError(f"{name}: members expand to {total / 2**30:.1f} GiB, over the {MAX_ZIP_TOTAL_BYTES / 2**30:.0f} GiB limit")
    return [i for i in infos if not i.is_dir() and Path(i.filename).suffix.lower() in IMAGE_EXTS and not _hidden(i.filename)]


def _hidden(path: str) -> bool:
    """Dot-files and folders (.DS_Store, ._x.png, .ipynb_checkpoints/) and macOS's __MACOSX/ are not data."""
    return any(p.startswith(".") or p == "__MACOSX" for p in path.replace("\\", "/").split("/"))


def _zip_reader(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo]):
    by_name = {info.filename: info for info in members}

    def read(name: str) -> bytes | None:
        info = by_name[name]
        if info.file_size > MAX_FILE_BYTES:
            return None
        try:
            with zf.open(info) as f:
                data = f.read(info.file_size + 1)  # never trust the header beyond its declared size
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError):  # corrupt data or CRC: skipped, counted
            return None
        if len(data) > info.file_size:
            raise DatasetError(f"member {info.filename!r} is larger than its header says; refusing this zip")
        return data

    return read


def _image_files(root: Path) -> list[str]:
    """Sorted relative paths of the regular image files under root (symlinked folders not followed)."""
    files, seen = [], 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        seen += len(dirs) + len(names)
        if seen > MAX_FOLDER_ENTRIES:
            raise DatasetError(
                f"{root}: more than {MAX_FOLDER_ENTRIES:,} files and folders; point at the folder that holds your images"
            )
        for name in names:
            p = Path(folder) / name
            if p.suffix.lower() in IMAGE_EXTS and not _hidden(name) and p.is_file():  # no FIFOs/devices: could hang
                files.append(p.relative_to(root).as_posix())
    return sorted(files)


def _declared_members(path: Path) -> int | None:
    """The member count in a zip's end record (read without parsing the member list), or None."""
    try:
        with open(path, "rb") as f:
            end = zipfile._EndRecData(f)  # private, but stable since Python 2; guarded below
    except (AttributeError, OSError, ValueError):
        return None
    return int(end[zipfile._ECD_ENTRIES_TOTAL]) if end else None


def _read_file(root: Path):
    def read(name: str) -> bytes | None:
        path = root / name
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                return None
            return path.read_bytes()
        except OSError:  # unreadable (permissions, vanished, a dangling link): skipped and counted
            return None

    return read


def load_dataset(
    name_or_path: str, *, resolution: int = 32, channels: int = 1, split: str = "train", limit: int | None = None
) -> ImageDataset:
    """A built-in name, a folder or a .zip -> ImageDataset (see the module docstring for the layouts)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DatasetError(f"limit must be a positive number of images, got {limit!r}; omit it to use them all")
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    key = str(name_or_path).strip()
    if not key:
        raise DatasetError("no dataset given: use fashion-mnist, mnist, cifar10, ring8, grid25, a folder of images or a .zip")
    if key in ("ring8", "grid25"):
        return toy_points(key)
    if key in ("fashion-mnist", "mnist", "cifar10"):
        return _builtin(key, resolution, channels, split, limit)
    path = Path(key).expanduser()
    if not path.exists():
        raise DatasetError(
            f"unknown dataset {key!r}: use fashion-mnist, mnist, cifar10, ring8, grid25, a folder of images or a .zip"
        )
    if path.is_dir():
        files = _image_files(path)
        if not files:
            raise DatasetError(f"{path}: no image files ({', '.join(sorted(IMAGE_EXTS))}) found in this folder")
        if len(files) > MAX_FOLDER_FILES and not limit:
            raise DatasetError(
                f"{path}: {len(files):,} images is more than the {MAX_FOLDER_FILES:,} read without a limit; pass --limit"
            )
        check_memory(path.name, min(len(files), limit or len(files)), channels, resolution)
        return _load_files(files, _read_file(path), path.name, resolution, channels, limit)
    declared = _declared_members(path)
    if declared is not None and declared > MAX_ZIP_MEMBERS:  # before zipfile parses every member header
        raise DatasetError(f"{path.name}: {declared:,} members is more than the {MAX_ZIP_MEMBERS:,} allowed; split the archive")
    try:
        with zipfile.ZipFile(path) as zf:
            members = check_zip(zf, path.name)
            if not members:
                raise DatasetError(f"{path.name}: the archive holds no image files")
            names = sorted(info.filename for info in members)
            check_memory(path.name, min(len(names), limit or len(names)), channels, resolution)
            return _load_files(names, _zip_reader(zf, members), path.name, resolution, channels, limit)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError):
        raise DatasetError(f"{path}: not a folder or a readable .zip of images") from None
    except (OSError, RuntimeError) as e:  # an encrypted member, a truncated archive, an unreadable file
        raise DatasetError(f"{path}: could not read this zip ({type(e).__name__}: {e}); re-create it") from None


BUILTIN_SIZES = {("fashion-mnist", "train"): 60_000, ("fashion-mnist", "test"): 10_000, ("mnist", "train"): 60_000,
                 ("mnist", "test"): 10_000, ("cifar10", "train"): 50_000, ("cifar10", "test"): 10_000}


def _builtin(key: str, resolution: int, channels: int, split: str, limit: int | None) -> ImageDataset:
    n = BUILTIN_SIZES[key, split]
    check_memory(key, min(n, limit or n), channels, resolution)  # before any download or decoding
    if key == "fashion-mnist":
        x, y = load_fashion_mnist(split)
        x, classes = x[:, None], FMNIST_CLASSES
    else:
        ds = _torchvision({"mnist": "MNIST", "cifar10": "CIFAR10"}[key], split)
        if key == "mnist":
            x, y, classes = ds.data[:, None], ds.targets, tuple(str(i) for i in range(10))
        else:
            x = torch.from_numpy(ds.data).permute(0, 3, 1, 2)
            y, classes = torch.tensor(ds.targets), tuple(ds.classes)
    if limit:
        x, y = x[:limit], y[:limit]  # these sets come shuffled: a prefix keeps every class
    return ImageDataset(key, to_uint8_images(x, resolution, channels), torch.as_tensor(y).long(), class_names=classes)
