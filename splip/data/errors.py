"""Where the data lives, and the error raised when it is not there."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV_VAR = "SPLIP_DATA"


class DatasetNotFoundError(FileNotFoundError):
    """A benchmark's folder is missing or incomplete.

    The message names what was looked at and what is missing, shows the expected layout, where to
    download the data and how to point splip at it.
    """


def resolve_data_root(root: str | Path | None) -> Path:
    """The folder that holds the benchmark folders (``Sketchy/``, ``TUBerlin/``, ``QuickDraw/``).

    Precedence: the ``root`` argument, else the environment variable ``SPLIP_DATA`` (if set and
    non-empty), else ``./data`` relative to the current working directory. ``~`` is expanded and
    the result made absolute (symlinks are not resolved).
    """
    if root is None:
        env = os.environ.get(DATA_ENV_VAR, "").strip()
        root = env if env else "data"
    return Path(root).expanduser().absolute()


def not_found_message(
    *,
    title: str,
    looked_at: Path,
    problems: list[str],
    layout: str,
    download: str,
    dataset_name: str,
    folder: str,
) -> str:
    """The text of a :class:`DatasetNotFoundError` (kept in one place so every loader says the same)."""
    shown = problems[:5]
    more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    problem_text = "\n".join(f"  - {p}" for p in shown) + more
    return (
        f"{title} not found or incomplete at {looked_at}\n"
        f"Problems:\n{problem_text}\n"
        f"Expected layout:\n{layout}\n"
        f"Download: {download}\n"
        f"Point splip at the folder that contains {folder}/: "
        f"load_dataset({dataset_name!r}, root='/path/to/data') or export {DATA_ENV_VAR}=/path/to/data "
        f"(default: ./data).\n"
        f"To try splip without downloading anything, use load_dataset('synthetic')."
    )
