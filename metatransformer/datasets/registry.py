"""``read(path, modality=None)``: one entry point for every registered reader, and the one error they raise."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from ..registry import get_modality, list_modalities, modality_for_suffix


class ReadError(ValueError):
    """A file that a reader cannot use: missing, empty, not a regular file, corrupt, truncated, of the
    wrong format, or holding values the reader refuses. The message names the file and the reason."""


def check_file(path: str | os.PathLike, *, max_bytes: int | None = None) -> Path:
    """Refuse, before opening it, a path that is not a non-empty regular file (a FIFO would block a
    decoder forever) or is larger than ``max_bytes``.

    Returns:
        the path as a :class:`~pathlib.Path`.

    Raises:
        ReadError: naming the file; an ``OSError`` from ``stat`` (a name too long, no permission) included.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ReadError(f"{path}: no such file") from None
    except OSError as err:
        raise ReadError(f"{path}: cannot be accessed ({err.strerror or err})") from err
    if not stat.S_ISREG(info.st_mode):
        raise ReadError(f"{path}: not a regular file")
    if info.st_size == 0:
        raise ReadError(f"{path}: the file is empty")
    if max_bytes is not None and info.st_size > max_bytes:
        raise ReadError(f"{path}: {info.st_size:,} bytes is more than the {max_bytes:,} this reader accepts")
    return path


def read(path: str | os.PathLike, modality: str | None = None, **options: Any) -> Any:
    """Read one file with the reader of ``modality``, or of the modality its suffix infers.

    Args:
        path: the file.
        modality: a registered modality name or alias; inferred from the suffix when None (a suffix
            several modalities read, like ``.png``, infers the first that registered it: ``image``).
        **options: the reader's own options (``channels=1``, ``num_frames=16``...).

    Returns:
        what the modality's reader returns (see its docstring).

    Raises:
        ReadError: unknown suffix (the known ones are listed), a modality without a reader, or a file
            the reader cannot use.
    """
    path = Path(path)
    if modality is None:
        modality = modality_for_suffix(path.suffix)
        if modality is None:
            known = sorted({s for name in list_modalities() for s in get_modality(name).suffixes})
            raise ReadError(f"{path}: no modality reads {path.suffix or 'files without a suffix'!r}; pass "
                            f"modality= or use one of {', '.join(known)}")
    spec = get_modality(modality)
    if spec.reader is None:
        raise ReadError(f"{path}: modality {spec.name!r} has no file reader")
    return spec.reader(path, **options)
