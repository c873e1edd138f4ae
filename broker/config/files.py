"""Private files and directories: what the broker creates for its own state
(the data directory, the SQLite database, the development secret) is readable
by its user only, whatever the process umask.

Only what the broker creates is changed: an existing directory or file keeps
its mode (a data directory may be shared on purpose; a database path may sit
in a shared directory such as ``/tmp``).
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents with mode 0700 (``chmod`` after
    ``mkdir``: the umask only ever narrows, and a umask such as 0o277 would
    leave a directory the broker cannot use). Existing directories are left
    as they are."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by another process: not ours to change
        os.chmod(directory, PRIVATE_DIR_MODE)


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600, unless it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)
