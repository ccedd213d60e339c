"""TensorBoard event files under the run folder when `tensorboard` is installed; silently none otherwise."""

import sys

import pytest

from ganhub import registry
from ganhub.errors import ConfigError
from ganhub.run import RunFolder
from ganhub.train import train


def run(out, steps, **kw):
    return list(train("dcgan", dataset="fashion-mnist", steps=steps, out=out, limit=64, precision="fp32",
                      overrides=dict(registry.get("dcgan").test_config), **kw))


def test_losses_and_previews_are_written_and_resume_does_not_duplicate(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    f = RunFolder(tmp_path / "r")
    run(tmp_path / "r", 2, preview_every=1)
    at_2 = f.checkpoint_path.read_bytes()
    run(tmp_path / "r", 4, resume=True, preview_every=1)
    f.checkpoint_path.write_bytes(at_2)  # as if killed after logging steps 3-4 but before their checkpoint
    run(tmp_path / "r", 5, resume=True, preview_every=1)
    logdir = RunFolder(tmp_path / "r").tensorboard_dir
    assert list(logdir.glob("events.out.tfevents.*")), "no event file"
    acc = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"loss/loss_D", "loss/loss_G", "speed/images_per_s"} <= set(tags["scalars"]) and "samples" in tags["images"]
    # steps 3-4 were logged twice (before the 'kill' and after the resume): only the redone ones remain
    assert [e.step for e in acc.Scalars("loss/loss_D")] == [1, 2, 3, 4, 5]
    logged = {r["step"]: r["loss_D"] for r in RunFolder(tmp_path / "r").read_log()}
    assert [e.value for e in acc.Scalars("loss/loss_D")] == pytest.approx([logged[s] for s in range(1, 6)], abs=1e-4)
    image = acc.Images("samples")[-1]
    assert image.step == 5 and image.width == 8 * 34 + 2


def test_without_tensorboard_nothing_is_written_and_nothing_fails(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the extra were not installed
    events = run(tmp_path / "r", 2)
    assert events[-1].kind == "done"
    assert not RunFolder(tmp_path / "r").tensorboard_dir.exists()
    with pytest.raises(ConfigError, match=r"pip install 'ganhub\[tensorboard\]'"):  # asked for explicitly
        run(tmp_path / "r2", 2, tensorboard=True)


def test_tensorboard_can_be_turned_off(tmp_path):
    run(tmp_path / "r", 2, tensorboard=False)
    assert not RunFolder(tmp_path / "r").tensorboard_dir.exists()
