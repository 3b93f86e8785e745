"""Crash-safe checkpoint directories with a hash manifest, checked before anything is read.

A store is a folder (`checkpoints/` or `best/`) of complete checkpoints plus a pointer:

    step_0000051200/   the files of one checkpoint + manifest.json (sha256 and size of each)
    step_0000102400/
    latest             name of the newest complete checkpoint (text, replaced atomically)

Saving never touches a complete checkpoint: files are written into `.tmp-step_N-<pid>/`, each
fsynced, the manifest written last, the folder fsynced and renamed to `step_N` (atomic on POSIX),
the store folder fsynced, and only then `latest` is replaced (temp file, fsync, os.replace).
A kill at any instant leaves either the old or the new checkpoint complete; a leftover `.tmp-*`
is ignored and removed by the next save. Loading verifies the manifest (every listed file
present, same size, same sha256; the manifest's own hash) before deserializing any byte, and
falls back to the next older checkpoint, with a warning, when the newest one fails.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from simreal.files import TRASH_PREFIX, fsync_dir, replace_dir, restore_replaced, sha256_file, write_atomic
from simreal.errors import UserError

FORMAT = "simreal-checkpoint/1"
MANIFEST = "manifest.json"
POINTER = "latest"
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(UserError, RuntimeError):
    """No usable checkpoint, or a checkpoint failed verification; the message says which and why."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    files: dict[str, dict]


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _manifest_digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def verify(path: Path) -> Checkpoint:
    """Check a checkpoint folder against its manifest; raise CheckpointError saying what is wrong."""
    path = Path(path)
    mpath = path / MANIFEST
    try:
        manifest = json.loads(mpath.read_bytes())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no {MANIFEST} (incomplete checkpoint)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{mpath}: unreadable manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{mpath}: not a {FORMAT} manifest")
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    if manifest.get("sha256") != _manifest_digest(body):
        raise CheckpointError(f"{mpath}: manifest hash mismatch (manifest corrupted)")
    files = manifest.get("files")
    step = manifest.get("step")
    if not isinstance(files, dict) or not isinstance(step, int):
        raise CheckpointError(f"{mpath}: manifest lacks 'files' or 'step'")
    for name, meta in files.items():
        f = path / name
        if "/" in name or name.startswith("."):
            raise CheckpointError(f"{mpath}: bad file name {name!r}")
        if not f.is_file():
            raise CheckpointError(f"{f}: listed in the manifest but missing")
        size = f.stat().st_size
        if size != meta.get("size"):
            raise CheckpointError(f"{f}: size {size} bytes, manifest says {meta.get('size')} "
                                  f"(truncated or overwritten)")
        if sha256_file(f) != meta.get("sha256"):
            raise CheckpointError(f"{f}: sha256 mismatch (corrupted)")
    return Checkpoint(path=path, step=step, files=files)


class CheckpointStore:
    def __init__(self, root: Path, keep: int = 2):
        self.root = Path(root)
        self.keep = keep

    # ---- saving -----------------------------------------------------------------------------
    def save(self, step: int, write: Callable[[Path], None], meta: dict | None = None) -> Path:
        """Create step_<step>/ from the files `write(tmpdir)` puts in tmpdir; return its path."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        name = f"step_{step:010d}"
        tmp = self.root / f".tmp-{name}-{os.getpid()}"
        tmp.mkdir()
        try:
            write(tmp)
            files = {}
            for f in sorted(tmp.iterdir()):
                if not f.is_file() or f.name == MANIFEST:
                    raise CheckpointError(f"{f}: checkpoint writers may only create plain files")
                fsync_file(f)
                files[f.name] = {"sha256": sha256_file(f), "size": f.stat().st_size}
            body = {"format": FORMAT, "step": step, "files": files, **(meta or {})}
            manifest = {**body, "sha256": _manifest_digest(body)}
            with open(tmp / MANIFEST, "w") as fh:
                json.dump(manifest, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            fsync_dir(tmp)
            final = self.root / name
            replace_dir(tmp, final)  # same step saved again (final save): the old one is swapped out
            fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        write_atomic(self.root / POINTER, (name + "\n").encode())
        self._prune(keep_name=name)
        return final

    def _remove_leftovers(self) -> None:
        restore_replaced(self.root)         # a re-save cut between its renames: the old copy is good
        for d in self.root.iterdir():
            if d.name.startswith((".tmp-", TRASH_PREFIX)):
                shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink(missing_ok=True)

    def _prune(self, keep_name: str) -> None:
        steps = self.step_dirs()
        for d in steps[self.keep:]:
            if d.name != keep_name:
                shutil.rmtree(d, ignore_errors=True)

    # ---- loading ----------------------------------------------------------------------------
    def step_dirs(self) -> list[Path]:
        """Complete-looking checkpoint folders, newest step first."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), d) for d in self.root.iterdir()
                 if d.is_dir() and (m := _STEP_DIR.match(d.name))]
        return [d for _, d in sorted(found, reverse=True)]

    def pointer(self) -> Path | None:
        try:
            name = (self.root / POINTER).read_text().strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return self.root / name if _STEP_DIR.match(name) else None

    def candidates(self) -> list[Path]:
        """The pointer's target first, then every other checkpoint folder, newest first."""
        if self.root.is_dir():
            restore_replaced(self.root)
        first = self.pointer()
        rest = [d for d in self.step_dirs() if d != first]
        return ([first] if first is not None and first.is_dir() else []) + rest

    def latest_valid(self, max_step: int | None = None) -> Checkpoint:
        """The newest checkpoint that verifies; warns about each one skipped."""
        problems = []
        for d in self.candidates():
            try:
                ckpt = verify(d)
            except CheckpointError as e:
                problems.append(str(e))
                warnings.warn(f"skipping checkpoint: {e}", stacklevel=2)
                continue
            if max_step is not None and ckpt.step > max_step:
                continue
            return ckpt
        detail = ("; ".join(problems)) if problems else "none written yet"
        raise CheckpointError(f"{self.root}: no valid checkpoint ({detail})")

    def quarantine_newer(self, step: int) -> list[Path]:
        """Rename checkpoints newer than `step` (damaged, or from an abandoned future) to stale-*."""
        moved = []
        for d in self.step_dirs():
            m = _STEP_DIR.match(d.name)
            if int(m.group(1)) > step:
                dest = self.root / f"stale-{d.name}"
                if dest.exists():
                    shutil.rmtree(dest)
                os.rename(d, dest)
                moved.append(dest)
        return moved
