import io
import stat
import zipfile

import pytest
import torch
from PIL import Image

from ganhub import data
from ganhub.data import load_dataset
from ganhub.errors import DatasetError


def png_bytes(color=128, size=(40, 30), mode="L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_fashion_mnist_from_debian_files():
    x, y = data.load_fashion_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == torch.uint8 and y.shape == (10000,) and set(y.tolist()) == set(range(10))
    ds = load_dataset("fashion-mnist", resolution=64, channels=3, split="test", limit=100)
    assert ds.images.shape == (100, 3, 64, 64) and ds.classes[0] == "T-shirt/top"
    b = ds.batch(torch.arange(8))
    assert b.dtype == torch.float32 and b.min() >= -1 and b.max() <= 1


def test_toy_mixtures():
    ring = load_dataset("ring8")
    assert ring.kind == "points" and ring.images.shape[1] == 2 and len(ring.modes) == 8
    assert torch.allclose(ring.images.norm(dim=1).mean(), torch.tensor(2.0), atol=0.01)
    grid = load_dataset("grid25")
    assert len(grid.modes) == 25 and grid.mode_std == 0.05


def test_folder_counts_corrupt_files_and_converts_channels(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.png").write_bytes(png_bytes(10, mode="RGB"))
    (tmp_path / "sub" / "b.jpg").write_bytes(b"not really a jpeg")
    (tmp_path / "sub" / "c.png").write_bytes(png_bytes(200, size=(64, 64)))
    (tmp_path / "notes.txt").write_text("ignored: not an image extension")
    ds = load_dataset(str(tmp_path), resolution=32, channels=3)
    assert len(ds) == 2 and ds.skipped == 1 and ds.images.shape == (2, 3, 32, 32)


def zip_with(tmp_path, members, name="x.zip"):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, payload in members:
            zf.writestr(arcname, payload)
    return path


def test_zip_of_images(tmp_path):
    path = zip_with(tmp_path, [("imgs/a.png", png_bytes(1)), ("imgs/b.png", png_bytes(2)), ("__MACOSX/._a.png", b"junk"),
                               ("broken.png", b"\x89PNG broken")])
    ds = load_dataset(str(path), resolution=32, channels=1)
    assert len(ds) == 2 and ds.skipped == 1


@pytest.mark.parametrize("arcname", ["../../evil.png", "/etc/evil.png", "a/../../evil.png", "C:/evil.png", "..\\evil.png"])
def test_zip_escaping_members_are_refused(tmp_path, arcname):
    path = zip_with(tmp_path, [("ok.png", png_bytes()), (arcname, png_bytes())])
    with pytest.raises(DatasetError, match="escapes the archive"):
        load_dataset(str(path))
    assert not (tmp_path.parent / "evil.png").exists()


def test_zip_symlink_member_is_refused(tmp_path):
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("link.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DatasetError, match="symlink"):
        load_dataset(str(path))


def test_zip_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.png", b"\0" * (50 * 2**20))  # 50 MiB of zeros compresses ~1000x
    with pytest.raises(DatasetError, match="zip bomb"):
        load_dataset(str(path))


def test_zip_total_size_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_ZIP_TOTAL_BYTES", 1000)
    path = zip_with(tmp_path, [(f"{i}.png", png_bytes(i)) for i in range(20)])
    with pytest.raises(DatasetError, match="GiB limit"):
        load_dataset(str(path))


def test_decompression_bomb_image_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_IMAGE_PIXELS", 100 * 100)
    (tmp_path / "big.png").write_bytes(png_bytes(size=(400, 400)))
    with pytest.raises(DatasetError, match="decompression bomb"):
        load_dataset(str(tmp_path))


def test_unreadable_inputs_have_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        load_dataset("nope")
    (tmp_path / "plain.txt").write_text("hello")
    with pytest.raises(DatasetError, match="not a folder or a readable .zip"):
        load_dataset(str(tmp_path / "plain.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        load_dataset(str(tmp_path / "empty"))
    only_bad = zip_with(tmp_path, [("a.png", b"garbage")], "bad.zip")
    with pytest.raises(DatasetError, match="no readable images found"):
        load_dataset(str(only_bad))
