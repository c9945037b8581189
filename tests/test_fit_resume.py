"""fit resumes bit-identically after a kill at any moment (issue 10 item 4).

The in-process tests interrupt the run with an exception at a chosen item fetch (so the kill can
land mid-epoch, mid-batch, at an epoch boundary) and resume from a fresh model, fresh loaders and
scrambled global RNGs; the subprocess test sends a real SIGKILL at random moments.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import brainrdl
from brainrdl.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
import _fit_resume_worker as worker

torch.set_num_threads(1)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _reference(variant):
    worker.scramble()
    model, kw = worker.setup(variant)
    log = brainrdl.fit(model, **kw)
    return _weights(model), log


def _assert_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs by {(a[k] - b[k]).abs().max()}"


@pytest.mark.parametrize(
    ("variant", "kill_at", "every"),
    [
        ("brain_tuple", 61, 2),  # mid-epoch 1 (8 items per batch, 5 batches per epoch)
        ("brain_tuple", 41, 1),  # first fetch of epoch 1: killed right after an epoch end
        ("brain_loader", 101, 3),  # user DataLoader shuffled from the global RNG
        ("network", 75, 2),  # no brain loader: alignment on the task batches
        ("task", 70, 4),  # task only
    ],
)
def test_resume_after_interruption_is_bit_identical(tmp_path, variant, kill_at, every):
    ref, ref_log = _reference(variant)

    worker.scramble()
    model, kw = worker.setup(variant, kill_at=kill_at)
    with pytest.raises(worker.Killed):
        brainrdl.fit(model, checkpoint_dir=tmp_path, checkpoint_every=every, **kw)
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["global_step"] >= 1

    worker.scramble()
    torch.manual_seed(999)  # the resumed process starts elsewhere; the checkpoint decides
    model, kw = worker.setup(variant, seed=7)  # loaders' generators restored from the file
    log = brainrdl.fit(model, checkpoint_dir=tmp_path, checkpoint_every=every, resume=True, **kw)
    _assert_equal(_weights(model), ref)
    cols = [c for c in ref_log if c != "seconds"]
    assert log[cols].equals(ref_log[cols])


def test_without_resume_the_interrupted_run_differs(tmp_path):
    """The check above can fail: restarting from the checkpoint with fresh RNGs differs."""
    ref, _ = _reference("brain_tuple")
    worker.scramble()
    model, kw = worker.setup("brain_tuple", kill_at=61)
    with pytest.raises(worker.Killed):
        brainrdl.fit(model, checkpoint_dir=tmp_path, checkpoint_every=2, **kw)
    saved = load_checkpoint(tmp_path / "last.pt")
    saved["rng"]["torch"] = torch.manual_seed(999).get_state()  # lose one RNG
    save_checkpoint(saved, tmp_path / "last.pt")
    model, kw = worker.setup("brain_tuple")
    brainrdl.fit(model, checkpoint_dir=tmp_path, resume=True, **kw)
    assert any(not torch.equal(a, b) for a, b in zip(_weights(model).values(), ref.values()))


def test_every_n_steps_and_stale_temporaries(tmp_path):
    model, kw = worker.setup("brain_tuple")
    stale = tmp_path / ".last.pt.abc123.tmp"
    tmp_path.mkdir(exist_ok=True)
    stale.write_bytes(b"half a checkpoint")
    writes = []
    real = brainrdl.train.checkpoint.save_checkpoint

    def counting(state, path):
        writes.append((state["epoch"], state["acc"] is not None))
        return real(state, path)

    import brainrdl.train.loop as loop

    loop.save_checkpoint, saved = counting, loop.save_checkpoint
    try:
        brainrdl.fit(model, checkpoint_dir=tmp_path, checkpoint_every=2, **kw)
    finally:
        loop.save_checkpoint = saved
    assert not stale.exists()
    # 15 steps: mid-epoch saves at steps 2, 4, ..., 14 plus one after each of the 3 epochs
    assert sum(mid for _, mid in writes) == 7 and len(writes) == 10
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupt_or_empty_checkpoint_is_a_named_error(tmp_path):
    model, kw = worker.setup("task")
    path = tmp_path / "last.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=str(path.resolve()) + ".*empty"):
        brainrdl.fit(model, checkpoint_dir=tmp_path, resume=True, **kw)
    path.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(CheckpointError, match=str(path.resolve()) + ".*corrupt"):
        brainrdl.fit(model, checkpoint_dir=tmp_path, resume=True, **kw)
    save_checkpoint({"epoch": 1, "model": {}}, path)  # an old-format file
    with pytest.raises(CheckpointError, match="format"):
        brainrdl.fit(model, checkpoint_dir=tmp_path, resume=True, **kw)
    with pytest.raises(ValueError, match="checkpoint_every"):
        brainrdl.fit(model, checkpoint_dir=tmp_path, checkpoint_every=0, **kw)


def _spawn(out, variant, resume=False):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    cmd = [sys.executable, str(Path(worker.__file__)), str(out), variant]
    return subprocess.Popen(cmd + (["resume"] if resume else []), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _kill_after_progress(proc, ckpt, delay):
    """SIGKILL ``proc`` ``delay`` s after its first checkpoint appears (or when it ends)."""
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    """A real SIGKILL (checkpoints every step, so kills also land inside writes)."""
    variant = "brain_loader"  # user DataLoader shuffled from the global RNG: the hardest case
    torch.set_num_threads(1)
    ref, _ = _reference(variant)
    ckpt = tmp_path / "last.pt"
    for delay in (0.15, 0.4):  # two kills: during the first run and during the resumed one
        proc = _spawn(tmp_path, variant, resume=ckpt.exists())
        _kill_after_progress(proc, ckpt, delay)
    proc = _spawn(tmp_path, variant, resume=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    final = torch.load(tmp_path / "final.pt", weights_only=True)
    _assert_equal(final, ref)
    assert not list(tmp_path.glob("*.tmp"))
