"""File helpers shared by checkpoints (train), bundles (export, deploy), calibrations and the mock: no heavy imports."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old or the new content, never a mix."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux renameat2 RENAME_EXCHANGE). False where the
    kernel, C library or file system does not offer it."""
    import ctypes
    import errno
    import os

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


TRASH_PREFIX = ".trash-"


def replace_dir(stage: Path, final: Path) -> None:
    """Put a fully written directory in place; at every instant `final` is the old complete
    directory or the new one, or (only where an atomic swap is unavailable, between two renames)
    the old one waits under .trash-<name> for restore_replaced() to put back.

    Where the kernel can swap two paths atomically (Linux renameat2), the old directory is swapped
    into `stage` and removed after; elsewhere it is renamed aside, the new one renamed in, and the
    old one removed."""
    import os
    import shutil

    if not final.exists():
        os.rename(stage, final)
        return
    if _exchange(stage, final):
        shutil.rmtree(stage, ignore_errors=True)     # stage now holds the old directory
        return
    trash = final.parent / f"{TRASH_PREFIX}{final.name}"
    if trash.exists():
        shutil.rmtree(trash)
    os.rename(final, trash)
    os.rename(stage, final)
    shutil.rmtree(trash, ignore_errors=True)


def restore_replaced(parent: Path) -> list[Path]:
    """Put back every .trash-<name> whose <name> is missing (a replace_dir cut between its two
    renames); returns the restored paths. Leftover trash whose <name> exists is left to the caller."""
    import os

    restored = []
    for d in parent.glob(f"{TRASH_PREFIX}*"):
        final = parent / d.name[len(TRASH_PREFIX):]
        if d.is_dir() and not final.exists():
            os.rename(d, final)
            restored.append(final)
    return restored
