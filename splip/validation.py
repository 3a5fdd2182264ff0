"""Checks of settings and notebook parameters, made before any work starts.

Each check raises one :class:`ConfigError` that names the parameter, the value given and what is
allowed (``epochs must be a positive integer, got 'ten'``), and returns the value in a plain form
(numpy numbers as Python ones, paths as strings) that JSON files and checkpoints can hold. They are
used by the config dataclasses (``TrainConfig``, ``SpLIPConfig``, ``LossConfig``) and by the
notebooks for their own parameters.

Two traps they are written for: papermill passes ``-p x False`` as a bool and ``-p x 5`` as an int
but ``-p x no`` or ``-p x ten`` as a string; and ``bool`` is a subclass of ``int`` in Python, so
``epochs=True`` would otherwise pass as 1.
"""
from __future__ import annotations

import math
import numbers
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SEED_MAX = 2**32 - 1  # numpy's and torch's seeds alike; the trainer derives per-epoch seeds from it
DEVICE_PATTERN = re.compile(r"(auto|cpu|cuda(:\d+)?)")
DEVICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


class ConfigError(ValueError):
    """A setting or notebook parameter with a value it cannot take (named, with what is allowed)."""


def fail(name: str, value: Any, allowed: str) -> ConfigError:
    """The error for parameter `name`: "`name` must be `allowed`, got `value`" (raise it)."""
    hint = ""
    if isinstance(value, str) and ("True or False" in allowed or "integer" in allowed or "number" in allowed):
        # papermill reads -p epochs 5 as an int and -p x True as a bool, anything it cannot parse as text.
        hint = " (a string: papermill's -p and YAML read unquoted 5, 1.0e-3 and True as numbers and bools)"
    return ConfigError(f"{name} must be {allowed}, got {value!r}{hint}")


# ------------------------------------------------------------------------------------ numbers

def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def integer(name: str, value: Any, minimum: int | None = None, maximum: int | None = None,
            allowed: str | None = None) -> int:
    """An integer (numpy ints too; not a bool, not 2.0) within [minimum, maximum]."""
    if allowed is None:
        low = "" if minimum is None else f" >= {minimum}"
        allowed = f"an integer{low}" + ("" if maximum is None else f" and <= {maximum}")
    if not _is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise fail(name, value, allowed)
    return int(value)


def positive_int(name: str, value: Any) -> int:
    return integer(name, value, 1, allowed="a positive integer")


def nonnegative_int(name: str, value: Any) -> int:
    return integer(name, value, 0, allowed="an integer >= 0")


def optional_positive_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    return integer(name, value, 1, allowed="None or a positive integer")


def seed(name: str, value: Any) -> int:
    return integer(name, value, 0, SEED_MAX, allowed=f"an integer from 0 to {SEED_MAX}")


def real(name: str, value: Any, minimum: float | None = None, strict: bool = False,
         below: float | None = None, allowed: str | None = None) -> float:
    """A finite number (ints and numpy floats too; not a bool), >= minimum (> with `strict`) and
    < below. Returned as a float."""
    if allowed is None:
        allowed = "a finite number" + ("" if minimum is None else f" {'>' if strict else '>='} {minimum}")
    ok = _is_real(value) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if ok and below is not None:
        ok = value < below
    if not ok:
        raise fail(name, value, allowed)
    return float(value)


def positive_float(name: str, value: Any) -> float:
    return real(name, value, 0.0, strict=True, allowed="a positive finite number (e.g. 1e-3)")


def nonnegative_float(name: str, value: Any) -> float:
    return real(name, value, 0.0, allowed="a finite number >= 0")


def fraction(name: str, value: Any) -> float:
    """A share in [0, 1)."""
    return real(name, value, 0.0, below=1.0, allowed="a number in [0, 1), e.g. 0.2")


# ------------------------------------------------------------------------------------ others

def boolean(name: str, value: Any) -> bool:
    """True or False (numpy bools too); 'yes', 'False' (a string) or 1 are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise fail(name, value, "True or False")
    return bool(value)


def choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """One of `allowed` (compared with ==; unhashable values are refused too)."""
    allowed = tuple(allowed)
    try:
        ok = value in allowed
    except TypeError:
        ok = False
    if isinstance(value, (bool, np.bool_)) and not any(isinstance(a, (bool, np.bool_)) for a in allowed):
        ok = False  # True == 1
    if not ok:
        raise fail(name, value, f"one of {allowed}")
    return value


def text(name: str, value: Any, allowed: str = "a non-empty string") -> str:
    """A non-empty string; a path (os.PathLike) is returned as a string."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise fail(name, value, allowed)
    return value


def optional_text(name: str, value: Any, allowed: str = "None or a non-empty string") -> str | None:
    return None if value is None else text(name, value, allowed)


def device(name: str, value: Any) -> str:
    """A device name: 'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'. Whether this machine
    has that GPU is :func:`device_available`'s question, asked when a run starts."""
    if not isinstance(value, str) or not DEVICE_PATTERN.fullmatch(value):
        raise fail(name, value, DEVICES)
    return value


def device_available(name: str, value: str) -> None:
    """Refuse a CUDA device this machine does not have."""
    import torch

    if not value.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise ConfigError(f"{name}={value!r} but this machine has no CUDA GPU (torch.cuda.is_available() is False); "
                          f"use {name}='cpu' or 'auto'")
    index = int(value.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"{name}={value!r} but this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}; "
                          f"use one of those, or {name}='cuda' or 'auto'")


def options(name: str, value: Any, known: Iterable[str]) -> dict[str, Any]:
    """A dict whose keys are among `known` (a copy is returned)."""
    known = tuple(known)
    if not isinstance(value, Mapping):
        raise fail(name, value, f"a dict with keys among {known}")
    unknown = sorted(set(value) - set(known), key=str)
    if unknown:
        raise ConfigError(f"{name} has unknown key(s) {unknown} in {dict(value)!r}; known: {known}")
    return dict(value)


def names(name: str, value: Any, allowed: Iterable[str], optional: bool = True) -> list[str] | None:
    """None (where `optional`: all of them) or a non-empty list of distinct names from `allowed`."""
    allowed = list(allowed)
    what = ("None (all) or " if optional else "") + "a non-empty list of names"
    if value is None and optional:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"{name} must be {what}, got {value!r}; the names: {allowed}")
    unknown = [v for v in value if not isinstance(v, str) or v not in allowed]
    if unknown:
        raise ConfigError(f"{name} holds unknown name(s) {unknown}; choose from {allowed}")
    if len(set(value)) < len(value):
        raise ConfigError(f"{name} names a setting twice: {list(value)}")
    return list(value)


def seeds(name: str, value: Any) -> list[int]:
    """A non-empty list of distinct seeds."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise fail(name, value, f"a non-empty list of integers from 0 to {SEED_MAX}, e.g. [0, 1, 2]")
    out = [seed(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if len(set(out)) < len(out):
        raise ConfigError(f"{name} repeats a seed: {list(value)}")
    return out


# ------------------------------------------------------------------------------------ files

def existing_dir(name: str, value: Any) -> str:
    """The path of an existing folder."""
    path = text(name, value, "the path of a folder (a string)")
    if not Path(path).is_dir():
        what = "is a file" if Path(path).exists() else "does not exist"
        raise ConfigError(f"{name}={path!r} must be an existing folder, but it {what} "
                          f"(looked for {Path(path).resolve()})")
    return path


def writable_dir(name: str, value: Any) -> str:
    """A folder this process can create (if missing) and write in; tested by writing a temporary
    file into it or, when it does not exist yet, into its nearest existing parent (nothing is
    created and nothing is left behind)."""
    given = text(name, value, "the path of a folder (a string)")
    path = Path(given)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{name}={str(path)!r} is a file, not a folder; choose another {name}")
    where = path
    while not where.exists():
        where = where.parent
    if not where.is_dir():
        raise ConfigError(f"{name}={str(path)!r} cannot be created: {where} is a file, not a folder; "
                          f"choose another {name}")
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix=".splip-write-test-"):
            pass
    except OSError as error:
        raise ConfigError(f"{name}={str(path)!r} is not writable: cannot write in {where.resolve()} "
                          f"({error.strerror or type(error).__name__}); choose another {name}, or make {where} "
                          "writable") from None
    return given
