"""Finding and describing the shared memory segments in /dev/shm (for the CLI).

Inspecting only reads: entries are lstat'ed (symlinks are never followed, FIFOs
never opened) and lists are attached read-only, so whoever may read a segment
can inspect it, and inspecting can never change it.  Nothing is read past a
segment's first unwritten page (the core checks), so inspecting never
allocates one.
"""

import contextlib
import errno
import math
import os
import pwd
import stat
import struct
import time

from pyshl._codec import ShareableList

SHM_DIR = "/dev/shm"

# What /dev/shm may hold besides segments, which are regular files.
_KINDS = {stat.S_IFLNK: "symlink", stat.S_IFDIR: "directory", stat.S_IFIFO: "FIFO",
          stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
          stat.S_IFBLK: "block device"}


def _owner(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _path(name):
    """The entry in /dev/shm for segment `name`."""
    stem = name.lstrip("/")            # the core takes "/psm_x" for "psm_x"
    if not stem or "/" in stem:        # names the core refuses have no entry
        raise FileNotFoundError(errno.ENOENT, "no such segment", name)
    return os.path.join(SHM_DIR, stem)


def _other_kind(path, info):
    """What a non-regular entry is ("a directory", "a symlink to 'x'"); None for a segment."""
    if stat.S_ISREG(info.st_mode):
        return None
    if stat.S_ISLNK(info.st_mode):
        return "a symlink to %r" % os.readlink(path)
    return "a " + _KINDS.get(stat.S_IFMT(info.st_mode), "special file")


def other_kind(name):
    """What entry `name` is if it is not a segment ("a directory"...), else None.

    Raises FileNotFoundError if there is no such entry (OSError for a name too long).
    """
    path = _path(name)
    return _other_kind(path, os.lstat(path))


def _attach_list(name, size):
    """(the list in segment `name` attached read-only, None, False), or (None,
    why it is not one, False), or (None, why it cannot be read, True) for a
    segment that may hold a list but that this user may not open, or whose
    layout has pages never written (a sparse file, which reading would fill)."""
    if size < 16:
        return None, "%s bytes, too small for even an empty list (16)" % format(size, ","), False
    try:
        sl = ShareableList(name=name, readonly=True)    # attaching never tracks or unlinks
    except FileNotFoundError:
        raise
    except PermissionError:
        return None, "permission denied (cannot open it read-only)", True
    except ValueError as exc:
        message = str(exc)
        if "(a sparse file)" in message:
            # The core's "segment 'x' has unwritten pages from offset ...": before
            # reading any byte there, so inspecting never allocates a page.
            reason = "it has " + message.partition(" has ")[2].partition(": refusing")[0]
            return None, reason, "where its layout says" in message
        # The core's reason, without its "segment 'x' is not a valid ShareableList: ".
        return None, message.partition("ShareableList: ")[2] or message, False
    except OSError as exc:
        return None, "cannot open it read-only: %s" % (exc.strerror or exc), False
    # The core checked that the header fits the segment, and that its layout
    # was written; a list's segment is also exactly this size, which tells a
    # zero-filled block (0 items?) from an empty list.
    n = len(sl)
    data_size = struct.unpack_from("q", sl.shm.buf, 8 + 8 * n)[0]
    expected = 8 * (n + 2) + data_size + 9 * n
    if sl.shm.size == expected:
        return sl, None, False
    reason = "%s bytes, but a list of %s items with a %s-byte data area is %s bytes" % tuple(
        format(v, ",") for v in (sl.shm.size, n, data_size, expected))
    sl.close()
    return None, reason, False


@contextlib.contextmanager
def inspected(name):
    """Yield (description, list) for entry `name` in /dev/shm.

    The description is a dict: name, bytes (of a segment), owner, age_seconds,
    then items and types for a ShareableList, or "error" saying why it is not
    one, with "unreadable": true when it may be one that cannot be read (no
    permission, or a sparse file).  The list is attached read-only (None if
    it is not one) and closed when the block ends.  Raises FileNotFoundError
    if there is no such entry.
    """
    path = _path(name)
    info = os.lstat(path)                # never follows a symlink
    entry = {"name": name, "bytes": info.st_size, "owner": _owner(info.st_uid),
             "age_seconds": max(0.0, time.time() - info.st_mtime)}
    sl, reason, unreadable = None, _other_kind(path, info), False
    if reason:
        del entry["bytes"]               # a symlink's or a directory's size means nothing here
    else:
        sl, reason, unreadable = _attach_list(name, info.st_size)
    if sl is None:
        entry["error"] = reason
        if unreadable:
            entry["unreadable"] = True
        yield entry, None
        return
    try:
        entry.update(items=len(sl), types=sl._type_counts())
        yield entry, sl
    finally:
        sl.close()


def describe(name):
    """The description of entry `name`, as inspected() gives it."""
    with inspected(name) as (entry, _):
        return entry


def segments(include_all=False):
    """Descriptions of the entries in /dev/shm: the ShareableLists (and the
    segments that may be ones but cannot be read), or all of them."""
    found = []
    for name in sorted(os.listdir(SHM_DIR)):
        try:
            entry = describe(name)
        except FileNotFoundError:
            continue   # gone meanwhile
        if include_all or "error" not in entry or entry.get("unreadable"):
            found.append(entry)
    return found


def age(seconds):
    """A short human age: 42s, 7m, 3h, 12d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds


def types_summary(types):
    return ", ".join("%s %d" % (k, v) for k, v in types.items()) if types else "empty"


def json_value(value):
    """An item as JSON: numbers, str, bool and null as themselves; bytes and
    non-finite floats as small objects, so the output stays valid JSON."""
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    return value
