"""Concurrency stress and resource leaks: many processes, one list, bounded time."""
import gc
import multiprocessing
import os
import time

import numpy as np

from pyshl import ShareableList

SECONDS = float(os.environ.get("PYSHL_STRESS_SECONDS", "2"))

# The list's regions.
COUNTERS = range(0, 8)          # ints, atomic adds only: exact totals
FLOATS = range(8, 12)           # floats, atomic adds of 1.0: exact totals
SAME_TYPE = range(12, 28)       # same-type writes of known patterns: never torn
CHANGING = range(28, 36)        # type-changing writes: readers must not crash
INT_PATTERNS = {p * 0x0101010101010101 for p in range(128)}
FLOAT_PATTERNS = {float(p) + 0.5 for p in range(128)}


def layout():
    items = [0] * 8 + [0.0] * 4
    items += [0 if k % 2 else 0.5 for k in SAME_TYPE]
    items += ["initial!"] * len(CHANGING)
    return items


def _adder(sl, seed, results):
    rng = np.random.default_rng(seed)
    added = np.zeros(len(COUNTERS), dtype=np.int64)
    floats = 0
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        k = int(rng.integers(0, len(COUNTERS)))
        sl.fetch_add(k, 1)
        added[k] += 1
        batch = rng.integers(0, len(COUNTERS), 64)
        sl.add_at(batch, 2)
        np.add.at(added, batch, 2)
        sl.fetch_add(FLOATS[k % len(FLOATS)], 1.0)
        floats += 1
    results.put(("adder", added.tolist(), floats))


def _same_type_writer(sl, seed, results):
    rng = np.random.default_rng(seed)
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        for k in rng.integers(SAME_TYPE.start, SAME_TYPE.stop, 32):
            p = int(rng.integers(0, 128))
            sl[int(k)] = p * 0x0101010101010101 if k % 2 else float(p) + 0.5
    results.put(("writer",))


def _type_changer(sl, seed, results):
    rng = np.random.default_rng(seed)
    values = ["text", "é", 7, 2.5, None, b"bytes", True, "eightchr"]
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        k = int(rng.integers(CHANGING.start, CHANGING.stop))
        sl[k] = values[int(rng.integers(0, len(values)))]
    results.put(("changer",))


def _reader(sl, seed, results):
    torn = reads = 0
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        for k in SAME_TYPE:
            value = sl[k]
            reads += 1
            if value not in (INT_PATTERNS if k % 2 else FLOAT_PATTERNS) and value not in (0, 0.5):
                torn += 1
        # Reads that may race a type change of the same item: an odd value or
        # a clear ValueError (documented), never a crash.
        for k in CHANGING:
            try:
                sl[k]
            except ValueError:
                pass
        try:
            sl.count("text")
        except ValueError:
            pass
        values = sl[:SAME_TYPE.start]
        torn += sum(v < 0 for v in values)
        torn += int(sl.view(0, 8).min() < 0)
    results.put(("reader", torn, reads))


def test_eight_processes_mixing_every_kind_of_access(make):
    sl = make(layout())
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    roles = [_adder] * 3 + [_same_type_writer] * 2 + [_type_changer] + [_reader] * 2
    procs = [ctx.Process(target=role, args=(sl, seed, results)) for seed, role in enumerate(roles)]
    for p in procs:
        p.start()
    reports = [results.get(timeout=SECONDS + 60) for _ in procs]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * len(procs)

    added = np.sum([r[1] for r in reports if r[0] == "adder"], axis=0)
    assert sl.tolist()[:8] == added.tolist()                  # no lost update
    assert sum(sl.tolist()[8:12]) == sum(r[2] for r in reports if r[0] == "adder")
    readers = [r for r in reports if r[0] == "reader"]
    assert all(r[2] > 0 for r in readers)
    assert sum(r[1] for r in readers) == 0                    # never a torn value


def _rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_attach_close_loop_does_not_grow(make):
    sl = make(list(range(1000)) + ["text"] * 10)

    def cycle():
        other = ShareableList(name=sl.shm.name)
        other[5]
        other.view(0, 1000).sum()
        other.count("text")
        other.close()

    for _ in range(500):
        cycle()
    gc.collect()
    fds, rss = len(os.listdir("/proc/self/fd")), _rss_bytes()
    for _ in range(20_000):
        cycle()
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) <= fds
    if "asan" not in os.environ.get("LD_PRELOAD", ""):   # ASan's quarantine holds freed memory
        assert _rss_bytes() - rss < 4 * 2**20
