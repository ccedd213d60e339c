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
    assert y.dtype == torch.int64
    assert x.shape == (10000, 28, 28) and x.dtype == torch.uint8 and y.shape == (10000,) and set(y.tolist()) == set(range(10))
    ds = load_dataset("fashion-mnist", resolution=64, channels=3, split="test", limit=100)
    assert ds.images.shape == (100, 3, 64, 64) and ds.class_names[0] == "T-shirt/top" and ds.num_classes == 10
    b, labels = ds.batch(torch.arange(8))
    assert b.dtype == torch.float32 and b.min() >= -1 and b.max() <= 1
    assert labels.dtype == torch.int64 and labels.tolist() == y[:8].tolist()
    assert ds.labels.shape == (100,) and len(set(ds.labels.tolist())) == 10  # a prefix keeps every class


def test_batch_moves_images_and_labels_to_the_device():
    ds = load_dataset("fashion-mnist", split="test", limit=16)
    x, y = ds.batch(torch.tensor([3, 1]), torch.device("meta"))
    assert x.device.type == "meta" and y.device.type == "meta" and x.shape == (2, 1, 32, 32) and y.shape == (2,)


def test_check_classes_refuses_a_mismatched_conditional_config(tmp_path):
    ds = load_dataset("fashion-mnist", split="test", limit=16)
    data.check_classes(ds, 0)
    data.check_classes(ds, 10)
    with pytest.raises(DatasetError, match="set num_classes=10"):
        data.check_classes(ds, 5)
    (tmp_path / "a.png").write_bytes(png_bytes())
    flat = load_dataset(str(tmp_path))
    with pytest.raises(DatasetError, match="needs labelled data"):
        data.check_classes(flat, 3)


def test_toy_mixtures():
    ring = load_dataset("ring8")
    assert ring.kind == "points" and ring.images.shape[1] == 2 and len(ring.modes) == 8
    points, mode = ring.batch(torch.arange(100))
    assert ring.num_classes == 8 and (points - ring.modes[mode]).norm(dim=1).max() < 0.2  # label = its mode
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
    assert ds.labels is None and ds.num_classes == 0 and ds.batch(torch.arange(2))[1] is None


def make_class_folder(root, classes=("cat", "dog", "emu"), per_class=3):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"{i}.png").write_bytes(png_bytes(40 * c + i))


def test_folder_with_one_subfolder_per_class_is_labelled(tmp_path):
    make_class_folder(tmp_path / "set", classes=("dog", "cat", "emu"))
    (tmp_path / "set" / "cat" / "nested").mkdir()
    (tmp_path / "set" / "cat" / "nested" / "x.png").write_bytes(png_bytes(41))  # belongs to "cat"
    (tmp_path / "set" / "dog" / "README.txt").write_text("not an image")
    ds = load_dataset(str(tmp_path / "set"))
    assert ds.class_names == ("cat", "dog", "emu") and ds.num_classes == 3  # sorted names -> ids
    assert ds.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    # the label travels with its image: class c was drawn with grey level 40 c + i
    x, y = ds.batch(torch.arange(len(ds)))
    grey = ((x[:, 0, 0, 0] + 1) * 127.5).round()
    assert ((grey // 40) == torch.tensor([1, 1, 1, 1, 0, 0, 0, 2, 2, 2])).all()
    # a limited labelled set takes every class in turn
    assert sorted(load_dataset(str(tmp_path / "set"), limit=3).labels.tolist()) == [0, 1, 2]


def test_zip_of_class_folders_looks_through_a_wrapping_folder(tmp_path):
    path = zip_with(tmp_path, [("top/b/1.png", png_bytes(1)), ("top/a/1.png", png_bytes(2)), ("top/a/2.png", png_bytes(3))])
    ds = load_dataset(str(path))
    assert ds.class_names == ("a", "b") and ds.labels.tolist() == [0, 0, 1]


def test_images_at_the_top_make_a_folder_unlabelled(tmp_path):
    make_class_folder(tmp_path)
    (tmp_path / "stray.png").write_bytes(png_bytes())
    ds = load_dataset(str(tmp_path))
    assert len(ds) == 10 and ds.labels is None and ds.class_names == ()


def test_class_layout_rules():
    assert data.class_layout(["a.png", "b.png"]) == (None, ())
    assert data.class_layout(["r/a.png", "r/b.png"]) == (None, ())  # a wrapped flat folder
    assert data.class_layout(["r/x/a.png", "r/y/b.png"]) == ([0, 1], ("x", "y"))
    assert data.class_layout(["r/s/x/a.png", "r/s/x/b.png"]) == (None, ())  # one class is no labelling


def test_a_class_with_only_unreadable_images_is_refused(tmp_path):
    make_class_folder(tmp_path, classes=("a", "b"))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="class folder 'c' has no readable images"):
        load_dataset(str(tmp_path))


def test_mixed_sizes_and_modes_are_resized(tmp_path):
    (tmp_path / "wide.png").write_bytes(png_bytes(10, size=(300, 20), mode="RGB"))
    (tmp_path / "tiny.png").write_bytes(png_bytes(20, size=(3, 5), mode="L"))
    (tmp_path / "alpha.png").write_bytes(png_bytes((1, 2, 3, 4), size=(64, 64), mode="RGBA"))
    (tmp_path / "pal.gif").write_bytes(png_bytes(5, size=(33, 33), mode="P"))
    ds = load_dataset(str(tmp_path), resolution=16, channels=3)
    assert ds.images.shape == (4, 3, 16, 16) and ds.skipped == 0


def test_oversized_files_are_skipped_and_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_FILE_BYTES", 100)
    (tmp_path / "small.png").write_bytes(png_bytes(size=(2, 2)))
    (tmp_path / "big.png").write_bytes(png_bytes(size=(200, 200)) + b"\0" * 200)
    ds = load_dataset(str(tmp_path))
    assert len(ds) == 1 and ds.skipped == 1


def test_too_many_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_FOLDER_FILES", 3)
    monkeypatch.setattr(data, "MAX_ZIP_MEMBERS", 3)
    for i in range(4):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(i))
    with pytest.raises(DatasetError, match="pass --limit"):
        load_dataset(str(tmp_path))
    assert len(load_dataset(str(tmp_path), limit=2)) == 2
    path = zip_with(tmp_path, [(f"{i}.png", png_bytes(i)) for i in range(4)], "many.zip")
    with pytest.raises(DatasetError, match="split the archive"):
        load_dataset(str(path))


@pytest.mark.parametrize("limit", [0, -1, 2.5, True])
def test_bad_limits_are_refused(limit):
    with pytest.raises(DatasetError, match="limit must be a positive number"):
        load_dataset("fashion-mnist", limit=limit)


def test_bad_split_is_refused():
    with pytest.raises(DatasetError, match="split must be"):
        load_dataset("fashion-mnist", split="validation")


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
    assert len(ds) == 2 and ds.skipped == 1 and ds.labels is None


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
    no_images = zip_with(tmp_path, [("a.txt", b"text"), ("dir/", b"")], "text.zip")
    with pytest.raises(DatasetError, match="holds no image files"):
        load_dataset(str(no_images))
    (tmp_path / "truncated.zip").write_bytes(only_bad.read_bytes()[:40])
    with pytest.raises(DatasetError, match="not a folder or a readable .zip"):
        load_dataset(str(tmp_path / "truncated.zip"))


def test_member_count_is_checked_before_the_member_list_is_parsed(tmp_path, monkeypatch):
    path = zip_with(tmp_path, [(f"{i}.png", png_bytes(i)) for i in range(4)], "many.zip")
    monkeypatch.setattr(data, "MAX_ZIP_MEMBERS", 3)

    def never(*a, **k):
        raise AssertionError("the member list was parsed")

    monkeypatch.setattr(zipfile, "ZipFile", never)
    with pytest.raises(DatasetError, match="4 members is more than the 3 allowed"):
        load_dataset(str(path))


def test_corrupt_zip_members_are_skipped_and_counted(tmp_path):
    good, bad = png_bytes(1, size=(40, 40)), png_bytes(2, size=(41, 41))
    path = tmp_path / "c.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.png", good)
        zf.writestr("b.png", bad)
    raw = bytearray(path.read_bytes())
    start = raw.index(b"b.png") + len("b.png")  # b's local header name; its data follows
    raw[start + 8 : start + 28] = b"\xff" * 20
    path.write_bytes(bytes(raw))
    ds = load_dataset(str(path))
    assert len(ds) == 1 and ds.skipped == 1


def test_encrypted_zip_is_refused_in_one_line(tmp_path):
    path = zip_with(tmp_path, [("a.png", png_bytes())], "secret.zip")
    raw = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
        raw[raw.index(signature) + offset] |= 0x1  # general-purpose flag bit 0: encrypted
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="'a.png' is encrypted; re-create the zip without a password"):
        load_dataset(str(path))


def test_a_dataset_that_cannot_fit_in_memory_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "physical_memory", lambda: 2 * 2**30)
    with pytest.raises(DatasetError, match=r"fashion-mnist at 1024 px needs 58\.6 GiB .* use --limit"):
        load_dataset("fashion-mnist", resolution=1024)
    assert len(load_dataset("fashion-mnist", resolution=128, split="test", limit=10)) == 10
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(i))
    monkeypatch.setattr(data, "physical_memory", lambda: 1000)
    monkeypatch.setattr(data, "_decode", lambda *a: pytest.fail("decoded before the memory check"))
    with pytest.raises(DatasetError, match="needs 0.0 GiB"):
        load_dataset(str(tmp_path), resolution=32)


def test_empty_name_and_huge_trees_are_refused(tmp_path, monkeypatch):
    for blank in ("", "   "):
        with pytest.raises(DatasetError, match="no dataset given"):
            load_dataset(blank)
    for i in range(5):
        (tmp_path / f"d{i}").mkdir()
        (tmp_path / f"d{i}" / "a.png").write_bytes(png_bytes(i))
    monkeypatch.setattr(data, "MAX_FOLDER_ENTRIES", 6)
    with pytest.raises(DatasetError, match="more than 6 files and folders"):
        load_dataset(str(tmp_path))


def test_special_files_are_ignored_not_read(tmp_path):
    import os

    (tmp_path / "a.png").write_bytes(png_bytes())
    os.mkfifo(tmp_path / "fifo.png")  # reading it would block forever
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "dangling.png").symlink_to(tmp_path / "missing")
    ds = load_dataset(str(tmp_path))
    assert len(ds) == 1 and ds.skipped == 0


def test_hidden_files_and_folders_are_not_data(tmp_path):
    make_class_folder(tmp_path / "set", classes=("a", "b"), per_class=2)
    (tmp_path / "set" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "set" / ".ipynb_checkpoints" / "x.png").write_bytes(png_bytes())
    (tmp_path / "set" / "a" / "._0.png").write_bytes(b"AppleDouble metadata")
    ds = load_dataset(str(tmp_path / "set"))
    assert ds.class_names == ("a", "b") and len(ds) == 4 and ds.skipped == 0
    path = zip_with(tmp_path, [("r/a/1.png", png_bytes(1)), ("r/b/1.png", png_bytes(2)), ("__MACOSX/r/a/._1.png", b"x"),
                               ("r/.hidden/1.png", png_bytes(3))])
    z = load_dataset(str(path))
    assert z.class_names == ("a", "b") and len(z) == 2 and z.skipped == 0
