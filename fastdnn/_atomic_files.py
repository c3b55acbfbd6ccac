"""Files written atomically, for both model formats (``_fastdnn_format``, ``_keras_format``).

Writing goes to a temporary file in the same folder, is flushed to disk, then renamed over the
target: a crash mid-write leaves the previous file intact, and the temporary file, named after
its writer's pid and host, is removed by the next save or load of that path once its writer is
gone.
"""

import contextlib
import os
import socket
import tempfile

__all__ = ["clear_stale_temps", "write", "destination"]


def _temp_prefix(path) -> str:
    """The start of a temporary file's name for ``path``: its writer's pid and host, so that a
    later save or load can tell the temporary files of killed writers from live ones."""
    return f".{os.path.basename(path)}.tmp-{os.getpid()}-{socket.gethostname()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process, or a pid we cannot judge: keep its file
    return True


def clear_stale_temps(path) -> None:
    """Remove the temporary files that killed saves of ``path`` left beside it: those written
    on this host by a process that no longer exists (a live writer's file is kept)."""
    folder, base = os.path.split(os.path.abspath(path))
    start, host = f".{base}.tmp-", socket.gethostname()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not name.startswith(start):
            continue
        pid, _, rest = name[len(start):].partition("-")
        if not pid.isdigit() or rest.rpartition("-")[0] != host or _pid_alive(int(pid)):
            continue
        with contextlib.suppress(OSError):  # another process may clear it at the same time
            os.unlink(os.path.join(folder, name))


def write(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see module doc)."""
    folder = os.path.dirname(os.path.abspath(path))
    clear_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def destination(filepath, suffix, what, overwrite) -> str:
    """``filepath`` as a str, to save ``what`` (e.g. 'a model') to; refuse one that does not end
    in ``suffix``, or names an existing file when not ``overwrite``."""
    path = os.fspath(filepath)
    if not path.endswith(suffix):
        raise ValueError(f"Invalid filepath extension for saving {what}. Please add a `{suffix}` "
                         f"extension. Received: filepath={path}")
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists and overwrite=False")
    return path
