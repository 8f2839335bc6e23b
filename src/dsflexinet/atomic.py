"""Atomic file output: a job either leaves a complete file or none.

Snakemake deletes the outputs of failed jobs, but files written outside Snakemake (CLI use, partial caches)
must never be mistaken for complete ones. Everything is written to a temporary sibling and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dsflexinet.errors import PipelineError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Keep the extension last: numpy, matplotlib and torch choose formats by it.
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.tmp-", suffix=target.suffix if suffix is None else suffix, dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; finished files get the usual permissions
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _first_non_finite(value: Any, where: str = "") -> str | None:
    """The key path (`devices.a.accuracy`, `rows[3]`) of the first NaN or infinite float in `value`, if any."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "<top level>"
    if isinstance(value, dict):
        children = ((f"{where}.{key}" if where else str(key), item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        children = ((f"{where}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    return next(filter(None, (_first_non_finite(item, path) for path, item in children)), None)


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Standard JSON only: a NaN or Infinity (which json.dumps writes by default) fails naming the file and key."""
    where = _first_non_finite(payload)
    if where is not None:
        raise PipelineError(f"{path}: refusing to write a non-finite number (NaN or Infinity) at {where}")
    write_text(path, json.dumps(payload, indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file another job wrote, or one line naming it and what is wrong."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found (the rule that writes it has not run)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PipelineError(f"{path}: not valid JSON ({error})") from None
