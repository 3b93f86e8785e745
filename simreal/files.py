"""File helpers shared by checkpoints (train) and bundles (export, deploy): no heavy imports."""
from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def replace_dir(stage: Path, final: Path) -> None:
    """Put a fully written directory in place by rename; an existing one is swapped out first,
    so at every instant `final` is either the old complete directory or the new one."""
    import os
    import shutil

    if final.exists():
        trash = final.parent / f".trash-{final.name}-{os.getpid()}"  # swept by checkpoint cleanup
        os.rename(final, trash)
        os.rename(stage, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(stage, final)
