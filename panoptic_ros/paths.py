"""Output paths the console scripts check before they start work, so that a path that
cannot be written is one line naming it (exit code 2) instead of a traceback after a long
run."""
from __future__ import annotations

import os
from pathlib import Path

from panoptic_ros.config import ConfigError


def check_output(path: str | Path, *, folder: bool, what: str = "output") -> Path:
    """Make sure ``path`` can be created (or written) as a file or as a folder.

    Args:
        path: the output file or folder.
        folder: True if ``path`` is to be a folder.
        what: how the message names the output (e.g. ``--json-out``).
    Returns:
        ``path`` as a ``Path``.
    Raises:
        ConfigError: ``path`` is the other kind, lies under a file, or its nearest
            existing folder is not writable; the message names ``path``.
    """
    path = Path(path)
    if path.exists():
        if path.is_dir() != folder:
            raise ConfigError(f"{path}: {what} is a {'file' if folder else 'folder'}, not a "
                              f"{'folder' if folder else 'file'}")
        writable = path if folder else path.parent
    else:
        writable = next(p for p in path.parents if p.exists())
        if not writable.is_dir():
            raise ConfigError(f"{path}: cannot create the {what}, {writable} is a file")
    if not os.access(writable, os.W_OK | os.X_OK):
        raise ConfigError(f"{path}: cannot write the {what}, {writable} is not writable")
    return path


def os_error_line(exc: OSError) -> str:
    """An ``OSError`` as one line that starts with the path it concerns."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or type(exc).__name__}"
