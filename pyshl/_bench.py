"""Side-by-side timings: a plain list, the standard library's ShareableList and pyshl.

Every row runs the same statement on each contender in this one process and
reports the median of several repeats; the machine is noisy, so read the
ratios rather than the absolute figures.
"""

import array
import pickle
import statistics
import sys
import time
import timeit

# NumPy is imported inside the functions that time with it: the CLI imports this
# module, and `pyshl ls` must not pay for NumPy.
from pyshl import ShareableList, SharedMemory

# The standard ShareableList shares pyshl's layout from Python 3.9 on; 3.7
# has none and 3.8's is another layout, so there the stdlib columns are empty.
if sys.version_info >= (3, 9):
    from multiprocessing import shared_memory as std_shared_memory
else:
    std_shared_memory = None
# The floors use the standard SharedMemory where there is one.
_FloorMemory = std_shared_memory.SharedMemory if std_shared_memory else SharedMemory

# Items of every type, with edge cases: the int64 minimum, an 8-byte str, empty bytes.
SAMPLE = [42, -2**63, 2.5, True, False, None, "text", "x" * 8, b"bytes", b""]


def self_check():
    """Create, attach and write across pyshl and the stdlib; raise on any mismatch.

    Where the standard library has no compatible list (before 3.9), check
    pyshl's own round trips across handles.  Returns what was compared.
    """
    if std_shared_memory is None:
        with ShareableList(SAMPLE) as ours:
            again = pickle.loads(pickle.dumps(ours))
            try:
                again[0] = "written"
                if ours.tolist() != ["written"] + SAMPLE[1:] or again.count(None) != 1:
                    raise AssertionError("a second handle does not see the same list")
            finally:
                again.close()
            with ShareableList(["ééééé"]) as text:
                if text[0] != "ééééé":
                    raise AssertionError("non-ASCII text does not round-trip")
        return "pyshl handles read and write each other's lists; this Python's standard " \
               "library has no compatible ShareableList to compare with"
    ours = ShareableList(SAMPLE)
    theirs = std_shared_memory.ShareableList(SAMPLE)
    try:
        if bytes(ours.shm.buf) != bytes(theirs.shm.buf) or ours.format != theirs.format:
            raise AssertionError("pyshl's segment differs from the standard library's")
        std_view = std_shared_memory.ShareableList(name=ours.shm.name)
        try:
            if list(std_view) != SAMPLE:
                raise AssertionError("the stdlib reads a pyshl list wrongly")
            std_view[0] = "written"
        finally:
            std_view.shm.close()
        our_view = ShareableList(name=theirs.shm.name)
        try:
            if our_view.tolist() != SAMPLE:
                raise AssertionError("pyshl reads a stdlib list wrongly")
        finally:
            our_view.close()
        if ours[0] != "written" or ours.count(None) != 1 or ours.index(b"bytes") != 8:
            raise AssertionError("a write by the stdlib is not seen by pyshl")
        with ShareableList(["ééééé"]) as text:
            if text[0] != "ééééé":
                raise AssertionError("non-ASCII text does not round-trip")
    finally:
        ours.close()
        ours.unlink()
        theirs.shm.close()
        theirs.shm.unlink()
    return "pyshl and the stdlib read and write each other's lists, byte for byte"


def _median_seconds(stmt, namespace, number, repeat):
    """Median seconds per execution of stmt, its names bound as fast locals."""
    setup = "; ".join("%s = _ns[%r]" % (k, k) for k in namespace) or "pass"
    timer = timeit.Timer(stmt, setup=setup, globals={"_ns": namespace})
    return statistics.median(timer.repeat(repeat=repeat, number=number)) / number


def _median_call(fn, repeat):
    """Median seconds of fn(): at least `repeat` runs, more for fast functions
    (about 0.2 s of samples, so that a burst of noise cannot move the median)."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    repeat = max(repeat, min(200, int(0.2 / max(once, 1e-6))))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class _Stdlib:
    """Standard library lists made here, disposed of at the end."""

    available = std_shared_memory is not None

    def __init__(self):
        self.made = []

    def time(self, fn, repeat):
        """Median seconds of fn(), or None where the stdlib has no compatible list."""
        return _median_call(fn, repeat) if self.available else None

    def create(self, items):
        if not self.available:
            return None
        sl = std_shared_memory.ShareableList(items)
        self.made.append(sl)
        return sl

    def attach(self, sl):
        other = pickle.loads(pickle.dumps(sl))
        # The stdlib registers attached segments with the resource tracker
        # (gh-82300); this process is the creator, so that is harmless here.
        other.shm.close()

    def close(self):
        for sl in self.made:
            sl.shm.close()
            sl.shm.unlink()


def _floor(size):
    """Create and fill a fresh segment of `size` bytes with NumPy, then free it."""
    import numpy as np
    shm = _FloorMemory(create=True, size=size)
    array = np.frombuffer(shm.buf, dtype=np.uint8)
    array[:] = 1
    del array
    shm.close()
    shm.unlink()


# How many times run() reports progress.
STEPS = 6


def run(n=1_000_000, repeat=5, progress=None):
    """Time the core operations on n ints; return a list of result rows.

    Each row: (operation, {"list": s, "stdlib": s, "pyshl": s, "floor": s}).
    """
    import numpy as np
    rows = []
    say = progress or (lambda label: None)
    std = _Stdlib()
    ints = list(range(n))
    last = n - 1
    ours = None
    try:
        say("construct")
        ours = ShareableList(ints)
        stdl = std.create(ints)
        slow_repeat = max(3, repeat // 2)   # the stdlib takes ~1 s per pass
        rows.append(("construct from list", {
            "stdlib": std.time(lambda: std.create(ints), slow_repeat),
            "pyshl": _median_call(lambda: _dispose(ShareableList(ints)), repeat),
            "floor": _median_call(lambda: _floor(ours.shm.size), repeat),
        }))
        std.close()
        std.made = []
        stdl = std.create(ints)

        say("x[i]")
        number = 200_000
        # array.array('q') is the reference for a C container of int64: like
        # pyshl, and unlike a list, it must build a new int on every read.
        int64s = array.array("q", ints)
        for label, stmt in (("x[i]", "x[i]"), ("x[i] = v", "x[i] = v")):
            times = {}
            for who, x in (("list", ints), ("array", int64s), ("stdlib", stdl), ("pyshl", ours)):
                if x is None:
                    times[who] = None
                    continue
                scale = 20 if who == "stdlib" else 1
                times[who] = _median_seconds(stmt, {"x": x, "i": n // 2, "v": 7},
                                             number // scale, repeat)
            rows.append((label + " (int)", times))

        say("str items")
        words = ["word%d" % (k % 1000) for k in range(min(n, 100_000))]
        str_ours, str_std = ShareableList(words), std.create(words)
        times = {}
        for who, x in (("list", words), ("stdlib", str_std), ("pyshl", str_ours)):
            if x is None:
                times[who] = None
                continue
            scale = 20 if who == "stdlib" else 1
            times[who] = _median_seconds("x[i]", {"x": x, "i": len(words) // 2},
                                         number // scale, repeat)
        rows.append(("x[i] (short str)", times))
        _dispose(str_ours)

        say("scans")
        for label, fn in (("count(absent)", lambda x: x.count(-1)),
                          ("index(last)", lambda x: x.index(last)),
                          ("absent in x", lambda x: -1 in x),
                          ("list(x)", list)):
            rows.append((label, {
                "list": _median_call(lambda fn=fn: fn(ints), repeat),
                "stdlib": std.time(lambda fn=fn: fn(stdl), slow_repeat),
                "pyshl": _median_call(lambda fn=fn: fn(ours), repeat),
            }))

        say("views")
        private = np.arange(n, dtype=np.int64)
        view = ours.view()
        rows.append(("view() (homogeneity check)", {
            "pyshl": _median_call(ours.view, repeat),
        }))
        rows.append(("sum: sum(x) / view().sum() vs NumPy", {
            "list": _median_call(private.sum, repeat),
            "stdlib": std.time(lambda: sum(stdl), slow_repeat),
            "pyshl": _median_call(view.sum, repeat),
        }))
        del view
        rows.append(("construct from ndarray", {
            "stdlib": std.time(lambda: std.create(private.tolist()), slow_repeat),
            "pyshl": _median_call(lambda: _dispose(ShareableList(private)), repeat),
            "floor": _median_call(lambda: _floor(ours.shm.size), repeat),
        }))
        std.close()
        std.made = []
        stdl = std.create(ints)
        rows.append(("tolist() / list(x)", {
            "list": _median_call(ints.copy, repeat),
            "stdlib": std.time(lambda: list(stdl), slow_repeat),
            "pyshl": _median_call(ours.tolist, repeat),
        }))

        say("attach")
        blob = pickle.dumps(ours)

        def attach_ours():
            pickle.loads(blob).close()

        def attach_numpy():
            # This process created the segment, so the stdlib's registration
            # of an attached segment (gh-82300) changes nothing here.
            shm = _FloorMemory(ours.shm.name)
            view = np.ndarray((n,), dtype=np.int64, buffer=shm.buf, offset=8 * (n + 2))
            del view
            shm.close()

        rows.append(("attach by name (pickle.loads)", {
            "stdlib": std.time(lambda: std.attach(stdl), slow_repeat),
            "pyshl": _median_call(attach_ours, repeat),
            "floor": _median_call(attach_numpy, repeat),
        }))
    finally:
        if ours is not None:
            _dispose(ours)
        std.close()
    return rows


def _dispose(sl):
    sl.close()
    sl.unlink()


def _fmt_time(seconds):
    if seconds is None:
        return "—"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return "%.3g %s" % (seconds / scale, unit)
    return "%.3g ns" % (seconds / 1e-9)


def table(rows, n):
    """The rows as a Markdown table."""
    lines = [
        "%s items, %s, median of repeats" % (format(n, ","), sys.version.split()[0]),
        "",
        "| operation | list / NumPy floor | array.array('q') | stdlib | pyshl "
        "| pyshl vs stdlib | pyshl vs list/floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, t in rows:
        base = t.get("list", t.get("floor"))
        if t.get("stdlib") is None:   # pyshl only, or no compatible stdlib list
            lines.append("| %s | %s | %s | — | %s | — | %s |" % (
                label, _fmt_time(base), _fmt_time(t.get("array")), _fmt_time(t["pyshl"]),
                ("%.2f×" % (t["pyshl"] / base)) if base else "—"))
            continue
        speedup = t["stdlib"] / t["pyshl"]
        versus = t["pyshl"] / base if base else None
        lines.append("| %s | %s | %s | %s | %s | %s× faster | %s |" % (
            label, _fmt_time(base), _fmt_time(t.get("array")), _fmt_time(t["stdlib"]),
            _fmt_time(t["pyshl"]),
            format(round(speedup), ",") if speedup >= 10 else "%.1f" % speedup,
            ("%.2f×" % versus) if versus is not None else "—"))
    return "\n".join(lines)
