"""Owner-only folders and files for the embedded backends' state.

The data folder holds the SQLite store (sealed audit entries, registry), the artifacts
and the key-wrapping key: nobody but the account that runs the service should read it.
Folders are made 0700 and files 0600 whatever the umask (the mode is set again after
creation, since the umask can only take bits away from the one asked for); a folder or
file found looser is tightened and a warning says so.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("ipo.backends.files")

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def tighten(path: Path, mode: int) -> bool:
    """Take group and other bits off an existing ``path`` if any are set; True if it did."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    current = stat.S_IMODE(info.st_mode)
    if not current & 0o077:
        return False
    wanted = (current & 0o700) | mode
    try:
        os.chmod(path, wanted)
    except OSError as exc:  # another account's file: say so, but serve
        log.warning("%s has mode %04o and could not be tightened: %s", path, current, exc.strerror)
        return False
    log.warning(
        "tightened %s from mode %04o to %04o: only the service's own account may read it",
        path,
        current,
        wanted,
        extra={"path": str(path), "old_mode": f"{current:04o}", "new_mode": f"{wanted:04o}"},
    )
    return True


def make_private_folder(path: Path) -> None:
    """Create ``path`` and any missing parents as 0700 folders; an existing one is left.
    FileExistsError or NotADirectoryError if a file stands where a folder should."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            continue  # another process made it first
        os.chmod(folder, FOLDER_MODE)
    if not path.is_dir():
        raise FileExistsError(errno.EEXIST, "a file stands where a folder should", str(path))


def create_private_file(path: Path) -> None:
    """Create an empty ``path`` as 0600 if it is missing; tighten it if it is looser."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        tighten(path, FILE_MODE)
        return
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def prepare_database(path: Path) -> None:
    """The SQLite file made 0600 before SQLite opens it: SQLite gives its -wal and -shm
    files the database's own mode, so they are private too. Looser ones are tightened."""
    make_private_folder(path.parent)
    create_private_file(path)
    for suffix in ("-wal", "-shm"):
        tighten(path.with_name(path.name + suffix), FILE_MODE)


def secure_data_dir(data_dir: Path, owned: Path) -> None:
    """Tighten an existing data folder if ``owned``, an embedded backend's path, lies in
    it (a missing one is made 0700 by the backend that first writes there); a folder that
    holds none of the backends' state is not touched."""
    root = Path(os.path.abspath(data_dir))
    if Path(os.path.abspath(owned)).is_relative_to(root):
        tighten(root, FOLDER_MODE)
