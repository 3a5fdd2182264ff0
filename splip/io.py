"""Files: atomic writes (a crash mid-write never leaves a truncated checkpoint or results file behind)
and SHA-256 digests."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary file sits beside the target so os.replace stays on one filesystem (atomic).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_torch(obj: Any, path: str | Path) -> None:
    """torch.save `obj` to `path` atomically."""
    _atomic_write(Path(path), lambda handle: torch.save(obj, handle))


def save_json(obj: Any, path: str | Path) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    data = json.dumps(obj, indent=2, sort_keys=False).encode()
    _atomic_write(Path(path), lambda handle: handle.write(data))


def load_json(path: str | Path) -> Any:
    with open(path) as handle:
        return json.load(handle)


def sha256_of(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def display_path(path: str | Path) -> str:
    """``path`` as outputs show it: relative to the working directory (the repository root in the
    notebooks, the book and the command line) when it lies inside it or in a folder beside it (one
    ``..``, e.g. ``../shared/data``), so executed notebooks and logs carry no absolute path of the
    machine that wrote them; otherwise its last two parts after an ellipsis. Relative paths are
    returned as given."""
    path = Path(path)
    if not path.is_absolute():
        return str(path)
    relative = Path(os.path.relpath(path, Path.cwd()))
    if relative.parts.count("..") <= 1:
        return str(relative)
    return str(Path("…", *path.parts[-2:]))
