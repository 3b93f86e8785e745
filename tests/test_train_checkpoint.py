"""Checkpoint store: atomic saves survive SIGKILL, corruption is caught before deserializing,
and nothing is unpickled from an untrusted file."""
from __future__ import annotations

import json
import os
import random
import signal
import time
import warnings
from pathlib import Path

import pytest

from simreal.train.checkpoint import MANIFEST, CheckpointError, CheckpointStore, verify


def _writer(step: int, size: int = 4096):
    """Files whose content encodes the step, so a mixed-up checkpoint would be visible."""
    def write(d: Path) -> None:
        for name in ("a.bin", "b.bin", "c.json"):
            (d / name).write_bytes(f"{step}:{name}:".encode() + bytes([step % 251]) * size)
    return write


def _content_ok(ckpt) -> bool:
    return all((ckpt.path / n).read_bytes().startswith(f"{ckpt.step}:{n}:".encode())
               for n in ("a.bin", "b.bin", "c.json"))


def test_save_verify_prune(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for step in (10, 20, 30):
        store.save(step, _writer(step))
    assert [d.name for d in store.step_dirs()] == ["step_0000000030", "step_0000000020"]
    ckpt = store.latest_valid()
    assert ckpt.step == 30 and _content_ok(ckpt)
    assert (tmp_path / "latest").read_text().strip() == "step_0000000030"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "delete", "manifest_bitflip",
                                    "manifest_truncate"])
@pytest.mark.parametrize("target", ["a.bin", "c.json"])
def test_damaged_latest_falls_back_to_previous(tmp_path, damage, target):
    store = CheckpointStore(tmp_path, keep=3)
    store.save(1, _writer(1))
    newest = store.save(2, _writer(2))
    f = newest / (MANIFEST if damage.startswith("manifest") else target)
    data = bytearray(f.read_bytes())
    if damage.endswith("truncate"):
        f.write_bytes(data[: len(data) // 2])
    elif damage.endswith("bitflip"):
        i = random.Random(damage + target).randrange(len(data))
        data[i] ^= 1 << random.Random(i).randrange(8)
        f.write_bytes(bytes(data))
    else:
        f.unlink()
    with pytest.raises(CheckpointError):
        verify(newest)
    with pytest.warns(UserWarning, match="skipping checkpoint"):
        ckpt = store.latest_valid()
    assert ckpt.step == 1 and _content_ok(ckpt)


def test_every_single_bit_flip_in_a_small_checkpoint_is_detected(tmp_path):
    store = CheckpointStore(tmp_path)
    d = store.save(5, _writer(5, size=8))
    f = d / "a.bin"
    original = f.read_bytes()
    for i in range(len(original) * 8):
        data = bytearray(original)
        data[i // 8] ^= 1 << (i % 8)
        f.write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="sha256 mismatch"):
            verify(d)
    f.write_bytes(original)
    verify(d)


def test_no_valid_checkpoint_is_a_clear_error(tmp_path):
    store = CheckpointStore(tmp_path)
    with pytest.raises(CheckpointError, match="no valid checkpoint.*none written yet"):
        store.latest_valid()
    d = store.save(3, _writer(3))
    (d / "b.bin").write_bytes(b"x")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="b.bin: size 1 bytes"):
        store.latest_valid()


def test_leftover_temp_dir_and_bad_pointer_are_ignored(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(1, _writer(1))
    # a crash mid-save leaves a temp folder (possibly with a plausible manifest) and a pointer
    # that may name something odd: neither is ever used
    tmp = tmp_path / ".tmp-step_0000000002-999"
    tmp.mkdir()
    _writer(2)(tmp)
    (tmp_path / "latest").write_text("../../etc\n")
    assert store.latest_valid().step == 1
    store.save(3, _writer(3))
    assert not tmp.exists()
    assert store.latest_valid().step == 3


def _save_forever(root: Path, ready_fd: int) -> None:
    store = CheckpointStore(root, keep=2)
    step = int(store.step_dirs()[0].name.split("_")[1]) + 1   # steps only grow, as in training
    while True:
        store.save(step, _writer(step, size=200_000))
        os.write(ready_fd, b".")       # tell the parent a save completed (pipe never fills here)
        step += 1


@pytest.mark.parametrize("kills", [12, pytest.param(100, marks=pytest.mark.slow)])
def test_sigkill_during_save_never_corrupts_the_latest_checkpoint(tmp_path, kills):
    """P1: kill a saving process at random instants; a complete checkpoint always survives."""
    import select

    rng = random.Random(kills)
    store = CheckpointStore(tmp_path, keep=2)
    store.save(0, _writer(0, size=200_000))
    mid_save = 0
    for _ in range(kills):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: save back to back until killed
            try:
                os.close(r)
                _save_forever(tmp_path, w)
            finally:
                os._exit(0)
        os.close(w)
        # wait for one completed save (so the child is in its loop), then kill at a random instant
        assert select.select([r], [], [], 120)[0], "child made no progress"
        time.sleep(rng.uniform(0.0, 0.03))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        mid_save += any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # the newest complete checkpoint must be the pointer's
            ckpt = store.latest_valid()
        assert _content_ok(ckpt) and ckpt.step > 0
    assert mid_save > 0, "no kill landed inside a save; the test exercised nothing"


def test_manifest_lists_sizes_and_hashes(tmp_path):
    d = CheckpointStore(tmp_path).save(7, _writer(7))
    m = json.loads((d / MANIFEST).read_text())
    assert m["step"] == 7 and set(m["files"]) == {"a.bin", "b.bin", "c.json"}
    assert all(len(v["sha256"]) == 64 and v["size"] > 0 for v in m["files"].values())


_RESAVE_CHILD = """
import json, os, shutil, sys
from pathlib import Path
import simreal.files as F
from simreal.train.checkpoint import CheckpointStore

root, kill_at, exchange = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
w = lambda d: (d / "a.bin").write_bytes(b"x" * 1000)
store = CheckpointStore(root, keep=3)
store.save(10, w)
store.save(20, w, meta={"gen": 1})
calls = [0]

def killing(fn):
    def wrapped(*a, **k):
        calls[0] += 1
        if calls[0] == kill_at:
            os._exit(137)               # SIGKILL-like: no cleanup, no finally
        return fn(*a, **k)
    return wrapped

os.rename = killing(os.rename)
shutil.rmtree = killing(shutil.rmtree)
F._exchange = killing(F._exchange if exchange else (lambda a, b: False))
store.save(20, w, meta={"gen": 2})     # the final save of a run re-saves its last step
sys.exit(3)                             # kill_at beyond the last call: nothing was killed
"""


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_a_kill_anywhere_in_a_resave_keeps_that_step(tmp_path, exchange):
    """#15 defect 5: re-saving a step renamed the old folder away before renaming the new one in; a
    kill between the two left no checkpoint of that step (resume fell back to an older one) and the
    next save deleted the good copy in .trash-*. Killed at each file-system call in turn, the step
    survives, whole (old or new), and the next save keeps it."""
    import subprocess
    import sys

    killed_somewhere = 0
    for kill_at in range(1, 8):
        root = tmp_path / f"k{kill_at}"
        r = subprocess.run([sys.executable, "-c", _RESAVE_CHILD, str(root), str(kill_at), "1" if exchange else "0"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode == 3:
            break
        assert r.returncode == 137, r.stderr
        killed_somewhere += 1
        store = CheckpointStore(root, keep=3)
        ckpt = store.latest_valid()
        assert ckpt.step == 20, (kill_at, sorted(p.name for p in root.iterdir()))
        gen = json.loads((ckpt.path / MANIFEST).read_text())["gen"]
        assert gen in (1, 2)
        store.save(30, _writer(30))
        assert [d.name for d in store.step_dirs()] == ["step_0000000030", "step_0000000020", "step_0000000010"]
        assert json.loads((root / "step_0000000020" / MANIFEST).read_text())["gen"] == gen
        assert not [p for p in root.iterdir() if p.name.startswith(".")]
    assert killed_somewhere >= 2
