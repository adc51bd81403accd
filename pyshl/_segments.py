"""Finding and describing the shared memory segments in /dev/shm (for the CLI)."""

import math
import os
import pwd
import stat
import time

from pyshl._codec import ShareableList

SHM_DIR = "/dev/shm"


def _owner(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def describe(name):
    """A dict describing segment `name`; "error" says why it is not a readable list.

    Raises FileNotFoundError if there is no such segment.
    """
    info = os.stat(os.path.join(SHM_DIR, name))
    entry = {"name": name, "bytes": info.st_size, "owner": _owner(info.st_uid),
             "age_seconds": max(0.0, time.time() - info.st_mtime),
             "items": None, "types": None, "error": None}
    try:
        sl = ShareableList(name=name)        # attaching never registers or unlinks
    except (ValueError, PermissionError) as exc:
        entry["error"] = str(exc)
        return entry
    try:
        entry["items"] = len(sl)
        entry["types"] = sl._type_counts()
    finally:
        sl.close()
    return entry


def segments(include_all=False):
    """Descriptions of the segments in /dev/shm: the ShareableLists, or all of them."""
    found = []
    for name in sorted(os.listdir(SHM_DIR)):
        try:
            if not stat.S_ISREG(os.stat(os.path.join(SHM_DIR, name)).st_mode):
                continue
            entry = describe(name)
        except FileNotFoundError:
            continue   # gone meanwhile
        if include_all or entry["error"] is None:
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
