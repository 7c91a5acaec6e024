"""One error handler for every `uegr` command: a user's mistake is one line on stderr and exit code 2.

Errors a user can fix are ValueErrors (ConfigError, DataError, RunError, LandscapeError, ...) or
subclass `UserError` (ModelLoadError, AttackError, which are RuntimeErrors for historical callers).
OS errors (full disk, read-only folder, a lock that never came free) get a hint on what to do;
Ctrl-C exits 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable


class UserError(Exception):
    """Base for errors caused by what the user asked (not a ValueError for historical reasons)."""


def os_error_message(exc: OSError) -> str:
    """One line: what failed, on which file, and what to do."""
    where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
    what = (exc.strerror or str(exc)) + where
    if exc.errno == errno.ENOSPC:
        return f"{what}: the disk is full; free some space (or use --runs-dir on another disk), then resume"
    if exc.errno == errno.ENOTDIR:
        return f"{what}: part of that path is a file, not a folder; choose another --runs-dir"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{what}: the folder is not writable; fix its permissions or choose another --runs-dir"
    return f"{what}; check the file and the disk, then try again"


def _one_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def run_command(label: str, func: Callable, args, interrupted: str = "interrupted") -> int:
    """func(args) with the shared handling; label prefixes messages ("uegr train")."""
    try:
        return func(args)
    except (UserError, ValueError, FileNotFoundError) as exc:
        print(f"{label}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (OSError, TimeoutError) as exc:
        msg = os_error_message(exc) if isinstance(exc, OSError) else _one_line(exc)
        print(f"{label}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{label}: {interrupted}", file=sys.stderr)
        return 130
