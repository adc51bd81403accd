"""Finding and describing the shared memory segments in /dev/shm (for the CLI).

Inspecting only reads: entries are lstat'ed (symlinks are never followed, FIFOs
never opened), lists are attached read-only and arrays' headers read from a
read-only mapping, so whoever may read a segment can inspect it, and
inspecting can never change it.  Nothing is read past a segment's first
unwritten page (the core checks), so inspecting never allocates one.  Which
processes map a segment is read from /proc/*/maps, as fuser does: processes
of other users are seen only by root, and processes in other PID namespaces
(other containers) not at all.
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
from pyshl._npy import has_objects, read_header, simple_dtype
from pyshl._shm import SharedMemory

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


def mappers():
    """{(st_dev, st_ino): set of pids} for the files on /dev/shm's file system
    that processes this user may inspect map (this process left out).
    Matched by device and inode, not by path: a segment's name may end in
    " (deleted)", and a process may see /dev/shm under another path."""
    found = {}
    me = str(os.getpid())
    try:
        shm_dev = os.stat(SHM_DIR).st_dev
        pids = [p for p in os.listdir("/proc") if p.isdigit() and p != me]
    except OSError:
        return found
    wanted = "%02x:%02x" % (os.major(shm_dev), os.minor(shm_dev))
    for pid in pids:
        try:
            with open("/proc/%s/maps" % pid, "rb") as f:
                lines = f.read().decode("utf8", "replace").splitlines()
        except OSError:          # gone, or not ours to read
            continue
        for line in lines:
            fields = line.split(None, 5)
            if len(fields) < 5 or fields[3] != wanted:
                continue
            try:
                key = (shm_dev, int(fields[4]))
            except ValueError:
                continue
            found.setdefault(key, set()).add(int(pid))
    return found


def _attach_array(name, size):
    """A description of the shared array in segment `name` (dtype, shape,
    elements), read from its .npy header without NumPy; or (None, why not)."""
    try:
        shm = SharedMemory(name, track=False, readonly=True)
    except (OSError, ValueError) as exc:
        return None, str(exc)
    try:
        try:
            descr, shape, fortran, offset = read_header(shm.buf, size, shm._mmap.first_hole,
                                                        name)
        except ValueError as exc:
            return None, str(exc).partition("shared array: ")[2] or str(exc)
        except Exception as exc:     # hostile input: whatever it is, it is not an array
            return None, "an unreadable .npy header (%s)" % type(exc).__name__
        if has_objects(descr):
            return None, "a .npy header of Python objects, which cannot be shared"
        dtype, itemsize = simple_dtype(descr)
        elements = 1
        for n in shape:
            elements *= n
        if itemsize is not None and offset + itemsize * elements > size:
            return None, "%s of %s takes %s bytes, more than the segment has" % (
                shape, dtype, format(itemsize * elements, ","))
        described = {"dtype": dtype, "shape": list(shape), "elements": elements,
                     "data_offset": offset}
        if fortran:
            described["fortran_order"] = True
        return described, None
    finally:
        shm.close()


@contextlib.contextmanager
def inspected(name, mapped=None):
    """Yield (description, list) for entry `name` in /dev/shm.

    The description is a dict: name, bytes (of a segment), owner, age_seconds,
    mapped_by (the pids that map it, as mappers() sees them; `mapped` is
    mappers()'s result if the caller has it), kind ("list" or "array"),
    then items and types for a ShareableList, dtype, shape and elements for
    a shared array, or "error" saying why it is neither, with "unreadable":
    true when it may be one that cannot be read (no permission, or a sparse
    file).  The list is attached read-only (None if it is not one) and
    closed when the block ends.  Raises FileNotFoundError if there is no
    such entry.
    """
    path = _path(name)
    info = os.lstat(path)                # never follows a symlink
    entry = {"name": name, "bytes": info.st_size, "owner": _owner(info.st_uid),
             "age_seconds": max(0.0, time.time() - info.st_mtime)}
    sl, reason, unreadable = None, _other_kind(path, info), False
    if reason:
        del entry["bytes"]               # a symlink's or a directory's size means nothing here
    else:
        if mapped is None:
            mapped = mappers()
        entry["mapped_by"] = sorted(mapped.get((info.st_dev, info.st_ino), ()))
        sl, reason, unreadable = _attach_list(name, info.st_size)
        if sl is None and not unreadable:
            array, why = _attach_array(name, info.st_size)
            if array is not None:
                entry.update(kind="array", **array)
                yield entry, None
                return
            if not why.startswith("no .npy header"):
                reason = "a .npy header, but " + why
                unreadable = "(a sparse file)" in why
    if sl is None:
        entry["error"] = reason
        if unreadable:
            entry["unreadable"] = True
        yield entry, None
        return
    try:
        entry.update(kind="list", items=len(sl), types=sl._type_counts())
        yield entry, sl
    finally:
        sl.close()


def describe(name, mapped=None):
    """The description of entry `name`, as inspected() gives it."""
    with inspected(name, mapped) as (entry, _):
        return entry


def segments(include_all=False):
    """Descriptions of the entries in /dev/shm: the ShareableLists and shared
    arrays (and the segments that may be ones but cannot be read), or all of
    them."""
    found = []
    mapped = mappers()
    for name in sorted(os.listdir(SHM_DIR)):
        try:
            entry = describe(name, mapped)
        except FileNotFoundError:
            continue   # gone meanwhile
        except Exception as exc:     # one hostile entry must not hide the others
            entry = {"name": name, "error": "cannot inspect it: %s" % (exc,)}
        if include_all or "error" not in entry or entry.get("unreadable"):
            found.append(entry)
    return found


def parse_age(text):
    """Seconds from "90", "90s", "15m", "3h" or "2d" (an argparse type)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if not 0 <= value * units[unit] < float("inf"):
        import argparse
        raise argparse.ArgumentTypeError("an age is a number of seconds, or a number with "
                                         "s, m, h or d, not %r" % text)
    return value * units[unit]


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
