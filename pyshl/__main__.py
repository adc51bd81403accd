"""The pyshl command line: see, inspect and remove shared lists and arrays; benchmark; demo.

    pyshl ls [--all] [--json]          python -m pyshl works the same way
    pyshl show NAME [--json] [--limit N]
    pyshl rm [--force] NAME [NAME ...]
    pyshl rm --unused [--older-than AGE] [--dry-run] [--any-name]
    pyshl bench [-n N] [--repeat R]
    pyshl demo [--workers W] [--requests R] [--arrays]

Exit codes: 0 success, 1 a command failed (a missing segment, say), 2 bad usage.
"""

import argparse
import json
import os
import sys

# Nothing imported here may import NumPy: ls, show (of a list) and rm must
# not pay for it.
import pyshl
from pyshl import _bench, _segments
from pyshl._shm import unlink_segment


def _fail(message):
    print("pyshl: %s" % message, file=sys.stderr)
    return 1


def positive_int(text):
    """An argparse type: an integer of at least 1 (anything else is bad usage)."""
    try:
        if int(text) >= 1:
            return int(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError("must be a positive integer, not %r" % text)


# -- ls ---------------------------------------------------------------------------

def _pids(pids):
    if not pids:
        return "-"
    shown = ",".join(str(p) for p in pids[:4])
    return shown + (" +%d" % (len(pids) - 4) if len(pids) > 4 else "")


def _shape(shape):
    return "(%s)" % ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") \
        if shape else "()"


def cmd_ls(args):
    entries = _segments.segments(include_all=args.all)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    if not entries:
        print("no %s in %s" % ("segments" if args.all else "ShareableLists or shared arrays",
                               _segments.SHM_DIR))
        return 0
    rows = []
    for e in entries:
        size = format(e["bytes"], ",") if "bytes" in e else "-"    # none for a symlink...
        if "error" in e:
            kind, items, types, why = "-", "-", ("(unreadable)" if e.get("unreadable") else
                                                 "(not a list or array)"), e["error"]
        elif e["kind"] == "array":
            kind, items, why = "array", format(e["elements"], ","), ""
            types = "%s %s" % (e["dtype"], _shape(e["shape"]))
        else:
            kind, items, why = "list", format(e["items"], ","), ""
            types = _segments.types_summary(e["types"])
        rows.append((_shown(e["name"]), kind, items, size, types, e["owner"],
                     _segments.age(e["age_seconds"]), _pids(e.get("mapped_by")), why))
    # WHY (an entry is neither) is a column only when there are such entries (--all).
    rows.insert(0, ("NAME", "KIND", "ITEMS", "BYTES", "TYPES", "OWNER", "AGE", "MAPPED BY",
                    "WHY" if any(r[-1] for r in rows) else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.rjust(w) if i in (2, 3) else cell.ljust(w)
                        for i, (cell, w) in enumerate(zip(r, widths))).rstrip())
    return 0


# -- show -------------------------------------------------------------------------

def _shown_indexes(n, limit):
    """All indexes, or the first limit-5 and the last 5 of a long list."""
    if n <= limit:
        return list(range(n))
    tail = min(5, limit // 2)
    return list(range(limit - tail)) + list(range(n - tail, n))


def _read(sl, k):
    try:
        return sl[k], None
    except ValueError as exc:
        return None, str(exc)


def cmd_show(args):
    try:
        with _segments.inspected(args.name) as (entry, sl):
            if entry.get("unreadable"):      # no permission, or a sparse file
                return _fail("cannot read %r: %s" % (args.name, entry["error"]))
            if entry.get("kind") == "array":
                return _show_array(args, entry)
            if sl is None:
                return _fail("%r is neither a ShareableList nor a shared array: %s"
                             % (args.name, entry["error"]))
            indexes = _shown_indexes(len(sl), args.limit)
            items = [(k,) + _read(sl, k) for k in indexes]
            fmt = "".join(sl._get_packing_format(k) for k in indexes)
    except FileNotFoundError:
        return _fail("no shared memory segment named %r" % args.name)
    except OSError as exc:                   # a name too long, say
        return _fail("cannot inspect %r: %s" % (args.name, exc.strerror or exc))
    truncated = len(indexes) < entry["items"]
    if args.json:
        # The format of the items shown: the whole list's unless truncated.
        entry.update(format=fmt, truncated=truncated,
                     values=[[k, {"error": err} if err else _segments.json_value(v)]
                             for k, v, err in items])
        print(json.dumps(entry, indent=2, allow_nan=False))
        return 0
    print("name:    %s" % entry["name"])
    print("size:    %s bytes, %s items (%s)" % (format(entry["bytes"], ","),
                                                 format(entry["items"], ","),
                                                 _segments.types_summary(entry["types"])))
    print("format:  %s%s" % (fmt[:70], "…" if truncated or len(fmt) > 70 else ""))
    print("owner:   %s, modified %s ago" % (entry["owner"], _segments.age(entry["age_seconds"])))
    print("mapped:  %s" % _mapped_text(entry))
    previous = -1
    for k, value, err in items:
        if k != previous + 1:
            print("  … %s more …" % format(k - previous - 1, ","))
        print("  [%d] %s" % (k, "<corrupt: %s>" % err if err else repr(value)))
        previous = k
    return 0


def _mapped_text(entry):
    pids = entry.get("mapped_by") or []
    return "by pid%s %s" % ("s" if len(pids) > 1 else "", ", ".join(map(str, pids))) if pids \
        else "by no process this user can see"


def _show_array(args, entry):
    """A shared array's header and a summary (NumPy is imported for this)."""
    import numpy as np

    from pyshl._arrays import attach
    try:
        array = attach(args.name, readonly=True)
    except (OSError, ValueError) as exc:
        return _fail("cannot read %r: %s" % (args.name, exc))
    summary = {}
    if array.size and array.dtype.kind in "biuf":
        summary = {"min": array.min().item(), "max": array.max().item(),
                   "sum": array.sum(dtype=np.float64 if array.dtype.kind == "f"
                                    else None).item()}
    flat = array.reshape(-1)
    first = flat[:args.limit].tolist()
    if args.json:
        entry.update(numpy_dtype=str(array.dtype), summary={
            k: _segments.json_value(v) for k, v in summary.items()},
            first=[_segments.json_value(v if not isinstance(v, bytes) else v)
                   for v in first] if array.dtype.kind in "biufSU" else None,
            truncated=array.size > args.limit)
        print(json.dumps(entry, indent=2, allow_nan=False, default=str))
        return 0
    print("name:    %s" % entry["name"])
    print("array:   %s %s, %s elements, data at byte %d%s" % (
        array.dtype, _shape(array.shape), format(array.size, ","), entry["data_offset"],
        ", Fortran order" if entry.get("fortran_order") else ""))
    print("size:    %s bytes" % format(entry["bytes"], ","))
    print("owner:   %s, modified %s ago" % (entry["owner"], _segments.age(entry["age_seconds"])))
    print("mapped:  %s" % _mapped_text(entry))
    if summary:
        print("summary: min %r, max %r, sum %r" % (summary["min"], summary["max"],
                                                   summary["sum"]))
    print("first:   %s%s" % (", ".join(repr(v) for v in first),
                            " …" if array.size > args.limit else ""))
    return 0


# -- rm ---------------------------------------------------------------------------

def _remove(name):
    """Unlink segment `name`; 0 if done, else 1 (the failure said)."""
    try:
        unlink_segment(name)
    except FileNotFoundError:
        return _fail("no shared memory segment named %r" % name)
    except (ValueError, OSError) as exc:
        return _fail("cannot remove %r: %s" % (name, exc))
    print("removed %s" % _shown(name))
    return 0


def cmd_rm(args):
    if args.unused:
        if args.names or args.force:
            args.parser.error("rm --unused takes no names and no --force")
        return _remove_unused(args)
    if not args.names:
        args.parser.error("rm needs segment names, or --unused")
    if args.older_than is not None or args.dry_run or args.any_name:
        args.parser.error("--older-than, --dry-run and --any-name go with --unused")
    status = 0
    mapped = None if args.force else _segments.mappers()
    for name in args.names:
        try:
            other = _segments.other_kind(name)
        except OSError:
            other = None     # no such entry, or a bad name: the core says which
        if other:
            status = _fail("not removing %r: it is %s, not a shared memory segment"
                           % (name, other))
            continue
        if mapped is not None:
            try:
                info = os.lstat(_segments._path(name))
                pids = sorted(mapped.get((info.st_dev, info.st_ino), ()))
            except OSError:
                pids = []
            if pids:
                status = _fail("not removing %r: %s maps it (--force removes it anyway; "
                               "processes that map it keep their memory)"
                               % (name, "pid%s %s" % ("s" if len(pids) > 1 else "",
                                                      ", ".join(map(str, pids)))))
                continue
        status = _remove(name) or status
    return status


def _remove_unused(args):
    """Every ShareableList and shared array no process maps (that this user
    can see), named psm_* unless --any-name, at least --older-than old."""
    candidates = []
    for entry in _segments.segments():
        if "kind" not in entry or entry.get("mapped_by"):
            continue
        if not args.any_name and not entry["name"].startswith("psm_"):
            continue
        if args.older_than is not None and entry["age_seconds"] < args.older_than:
            continue
        try:
            info = os.lstat(_segments._path(entry["name"]))
        except OSError:
            continue         # gone meanwhile
        candidates.append((entry["name"], (info.st_dev, info.st_ino)))
    # Looked at again just before removing: a process may have attached one
    # meanwhile, or a new segment taken a name.
    mapped = _segments.mappers() if candidates else {}
    status = removed = 0
    for name, identity in candidates:
        try:
            info = os.lstat(_segments._path(name))
        except FileNotFoundError:
            continue
        if (info.st_dev, info.st_ino) != identity or identity in mapped:
            continue
        if args.dry_run:
            print("would remove %s" % _shown(name))
            removed += 1
            continue
        try:
            unlink_segment(name)
        except FileNotFoundError:
            continue
        except (ValueError, OSError) as exc:
            status = _fail("cannot remove %r: %s" % (name, exc))
            continue
        print("removed %s" % _shown(name))
        removed += 1
    if not removed and not status:
        print("nothing to remove")
    return status


def _shown(name):
    """A name as printed: escaped if it holds characters that are not printable
    (a newline in a name must not forge a line of output)."""
    return name if name.isprintable() else ascii(name)


# -- bench ------------------------------------------------------------------------

def cmd_bench(args):
    try:
        checked = _bench.self_check()
    except AssertionError as exc:
        return _fail("self-check failed: %s" % exc)
    print("self-check: ok (%s)" % checked, flush=True)
    steps = iter(range(1, _bench.STEPS + 1))

    def progress(label):
        print("  [%d/%d] timing %s …" % (next(steps), _bench.STEPS, label),
              file=sys.stderr, flush=True)

    rows = _bench.run(args.n, args.repeat, progress=progress)
    print()
    print(_bench.table(rows, args.n))
    return 0


# -- demo -------------------------------------------------------------------------

def cmd_demo(args):
    if args.arrays:
        from pyshl import demo_arrays as demo  # imports NumPy
    else:
        from pyshl import demo  # imports NumPy
    demo.run(args.workers, args.requests)
    return 0


def _command(commands, run, name, **help_texts):
    """A subcommand `name` that calls run(args)."""
    command = commands.add_parser(name, **help_texts)
    command.set_defaults(run=run)
    return command


def parser():
    main_parser = argparse.ArgumentParser(
        prog="pyshl",
        description="Shared lists and arrays in /dev/shm: see them, inspect them, remove leaked "
                    "ones, and measure pyshl against the standard library.",
        epilog="Exit status: 0 success, 1 a command failed, 2 bad usage.")
    main_parser.add_argument("--version", action="version",
                             version="%(prog)s " + pyshl.__version__)
    commands = main_parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True     # (the keyword is 3.7+)

    ls = _command(commands, cmd_ls, "ls", help="list the ShareableLists and shared arrays",
        description="List the segments in /dev/shm that hold a valid ShareableList "
                    "(pyshl's or the standard library's) or a shared array (a .npy image): "
                    "name, kind, items, bytes, the types of the items or the array's dtype "
                    "and shape, owner, age and the processes that map it.  Segments are "
                    "read through read-only mappings, so this works for any user who may "
                    "read them and never changes them.  Those this user may not open, and "
                    "sparse ones (pages never written where the header says there is data, "
                    "never read), are marked unreadable.")
    ls.add_argument("--all", action="store_true",
                    help="list every entry in /dev/shm, with why it is not a list "
                         "(other blocks, symlinks, directories, FIFOs)")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")

    show = _command(commands, cmd_show, "show", help="print a list's or an array's contents",
        description="Print a ShareableList's size, item types, format and items (the first "
                    "and last of a long list), or a shared array's dtype, shape, min/max/sum "
                    "and first elements (this imports NumPy).  It is attached read-only: "
                    "showing it never changes or unlinks it.")
    show.add_argument("name", help="the segment name, as `pyshl ls` prints it")
    show.add_argument("--json", action="store_true", help="print JSON: bytes as hex, "
                      "non-finite floats as strings, corrupt items as errors")
    show.add_argument("--limit", type=positive_int, default=20, metavar="N",
                      help="show at most N items (default 20)")

    rm = _command(commands, cmd_rm, "rm", help="unlink segments",
        description="Unlink shared memory segments by name, or every ShareableList and "
                    "shared array with a random psm_* name that no process maps "
                    "(--unused; --any-name for every name).  A segment that a "
                    "process maps (as /proc/*/maps shows: all processes for root, a user's "
                    "own otherwise, none in other containers) is left alone unless "
                    "--force.  Processes that map a removed segment keep its memory; the "
                    "name is gone at once.  Entries that are not segments (symlinks, "
                    "directories...) are left alone.")
    rm.set_defaults(parser=rm)
    rm.add_argument("names", nargs="*", metavar="NAME")
    rm.add_argument("--force", action="store_true",
                    help="remove named segments even if processes map them")
    rm.add_argument("--unused", action="store_true",
                    help="remove every ShareableList and shared array that no process maps")
    rm.add_argument("--older-than", type=_segments.parse_age, metavar="AGE",
                    help="with --unused: only those not modified for AGE (90s, 15m, 3h, 2d)")
    rm.add_argument("--dry-run", action="store_true",
                    help="with --unused: print what would be removed, remove nothing")
    rm.add_argument("--any-name", action="store_true",
                    help="with --unused: not only psm_* names (the random names pyshl and "
                         "the standard library give), but every list and array")

    bench = _command(
        commands, cmd_bench, "bench", help="self-check, then time pyshl against the stdlib",
        description="Check that pyshl and the standard library read and write each other's "
                    "lists, then time a plain list, the standard ShareableList and pyshl side "
                    "by side (medians; read the ratios).  benchmarks/bench_core.py runs the "
                    "same table on a million items.")
    bench.add_argument("-n", type=positive_int, default=100_000,
                       help="items (default 100,000)")
    bench.add_argument("--repeat", type=positive_int, default=5,
                       help="repeats per timing (default 5)")

    demo = _command(
        commands, cmd_demo, "demo", help="many workers aggregating into one shared histogram",
        description="Run the example in pyshl/demo.py: worker processes add latency "
                    "counts into a shared histogram with add_at and fetch_add, no lock; "
                    "with --arrays, pyshl/demo_arrays.py: workers fill compact shared "
                    "NumPy arrays that they attach by name.")
    demo.add_argument("--workers", type=positive_int, default=4,
                      help="worker processes (default 4)")
    demo.add_argument("--requests", type=positive_int, default=2_000_000,
                      help="requests per worker (default 2,000,000)")
    demo.add_argument("--arrays", action="store_true",
                      help="the shared-array version (pyshl/demo_arrays.py): compact int32 "
                           "and float32 arrays attached by name, filled with pyshl.add_at")
    return main_parser


def main(argv=None):
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
