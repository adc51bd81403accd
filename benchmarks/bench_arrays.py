"""Shared NumPy arrays: pyshl against the hand-written way, private NumPy and atomicshm.

    python benchmarks/bench_arrays.py [--workers 4] [--megabytes 100] [--big-gigabytes 1]

Rows, each side by side in one run (medians; the contenders take turns, so a
slow spell of a noisy machine hits every contender alike; read the ratios):

* making a shared copy of a 100 MB array: ``pyshl.array(x)`` against the
  hand-written ``SharedMemory(create=True)`` + ``np.ndarray`` + copy;
* attaching by name, for a 1 KB and a 1 GB array: ``pyshl.attach`` against
  ``SharedMemory(name)`` + ``np.ndarray`` (which needs the dtype and shape
  passed along);
* ``pyshl.add_at`` into 256 int32 bins from 1M indices, one process, against
  private ``np.add.at`` given a value of the array's dtype (NumPy's fast path)
  and given a Python scalar (what most code writes: 30-50× slower in NumPy 2),
  and ``np.bincount``;
* the same from W worker processes into one shared array, against each
  worker adding into its own row with ``np.add.at`` (fast path) and the parent
  summing the rows (no atomics);
* 1M random updates into 1M float32 bins, against private ``np.add.at``;
* ``pyshl.fetch_add`` on one int64 element per call, against atomicshm.

Every total is checked exactly.
"""
import argparse
import contextlib
import functools
import os
import statistics
import time
import timeit

import numpy as np
from _workers import run_workers

import pyshl
from pyshl import SharedMemory

try:
    import atomicshm
except ImportError:
    atomicshm = None

try:
    from multiprocessing import shared_memory as std_shared_memory
except ImportError:
    std_shared_memory = None


def _turns(functions, repeat=7, setup=None):
    """Median seconds of one call of each function, the functions taking turns."""
    times = [[] for _ in functions]
    for f in functions:
        if setup:
            setup()
        f()                           # warm up
    for _ in range(repeat):
        for f, kept in zip(functions, times):
            if setup:
                setup()
            start = time.perf_counter()
            f()
            kept.append(time.perf_counter() - start)
    return [statistics.median(kept) for kept in times]


# -- making and attaching ---------------------------------------------------------

def creation_rows(megabytes):
    x = np.random.default_rng(0).standard_normal(megabytes * 131072)    # megabytes of float64
    made = []

    def by_hand():
        shm = std_shared_memory.SharedMemory(create=True, size=x.nbytes)
        a = np.ndarray(x.shape, x.dtype, buffer=shm.buf)
        a[...] = x
        made.append((shm, a))

    def by_pyshl():
        made.append((None, pyshl.array(x, track=False)))

    def clean():
        while made:
            shm, a = made.pop()
            if shm is None:
                a.unlink()
                del a
            else:
                del a
                shm.close()
                shm.unlink()

    hand, ours = _turns([by_hand, by_pyshl], setup=clean)
    clean()
    return [("SharedMemory + np.ndarray + copy (by hand)", hand),
            ("pyshl.array(x)", ours)]


def _attach_times(size, number=2000):
    """Seconds per attach of an int64 array of `size` bytes: by hand, by pyshl."""
    with pyshl.empty(size // 8, np.int64, track=False) as a:
        # What the hand-written pattern sends each worker: name, shape,
        # dtype (and here the data's offset).
        name, shape, dtype = a.name, a.shape, a.dtype
        offset = os.path.getsize(os.path.join("/dev/shm", name)) - a.nbytes

        def by_hand():
            for _ in range(number):
                shm = SharedMemory(name, track=False)
                b = np.ndarray(shape, dtype, buffer=shm.buf, offset=offset)
                del b
                shm.close()

        def by_pyshl():
            for _ in range(number):
                pyshl.attach(name)

        hand, ours = _turns([by_hand, by_pyshl])
    return hand / number, ours / number


def attach_rows(big_gigabytes):
    return [(label, *_attach_times(size)) for label, size in (
        ("1 KB", 1024), ("%g GB" % big_gigabytes, int(big_gigabytes * 2**30)))]


# -- add_at -------------------------------------------------------------------------

def one_process_rows(count=1_000_000):
    """(case, updates, [seconds of pyshl.add_at, of np.add.at with a value of the
    array's dtype (NumPy's fast path), with a Python scalar, of np.bincount])."""
    rng = np.random.default_rng(1)
    rows = []
    for label, bins, dtype, value in (("256 int32 bins, 1M indices", 256, np.int32, 1),
                                      ("1M float32 bins, 1M random updates", 1_000_000,
                                       np.float32, 0.5)):
        idx = rng.integers(0, bins, count)
        shared = pyshl.zeros(bins, dtype, track=False)
        typed, plain = np.zeros(bins, dtype), np.zeros(bins, dtype)
        same = dtype(value)
        try:
            contenders = [functools.partial(pyshl.add_at, shared, idx, value),
                          functools.partial(np.add.at, typed, idx, same),
                          functools.partial(np.add.at, plain, idx, value)]
            if bins == 256:
                contenders.append(functools.partial(np.bincount, idx, minlength=bins))
            times = _turns(contenders, repeat=15)
            # (sums of ones and halves: exact whatever the order)
            if not shared.tolist() == typed.tolist() == plain.tolist():
                raise SystemExit("%s: pyshl and np.add.at disagree" % label)
            rows.append((label, count, times + [None] * (4 - len(times))))
        finally:
            shared.unlink()
    return rows


def _indices(worker, count, bins):
    return np.random.default_rng(100 + worker).integers(0, bins, count)


def w_shared_add_at(name, barrier, worker, batches, count, bins):
    a = pyshl.attach(name)
    idx = _indices(worker, count, bins)
    barrier.wait()
    for _ in range(batches):
        pyshl.add_at(a, idx, 1)


def w_own_row(name, barrier, worker, batches, count, bins):
    rows = pyshl.attach(name)
    idx = _indices(worker, count, bins)
    one = rows.dtype.type(1)             # NumPy's fast path wants the array's dtype
    barrier.wait()
    for _ in range(batches):
        np.add.at(rows[worker], idx, one)


def worker_rows(workers, bins=256, batches=10, count=1_000_000, rounds=3):
    expected = sum(np.bincount(_indices(w, count, bins), minlength=bins)
                   for w in range(workers)) * batches
    rates = {"pyshl.add_at into one shared array": [],
             "own rows with np.add.at, parent sums (no atomics)": []}
    for _ in range(rounds):
        with pyshl.zeros(bins, np.int32, track=False) as hist:
            seconds = run_workers(w_shared_add_at, lambda w, barrier, lock: (
                hist.name, barrier, w, batches, count, bins), workers)
            if hist.tolist() != expected.tolist():
                raise SystemExit("pyshl.add_at lost updates")
        rates["pyshl.add_at into one shared array"].append(workers * batches * count / seconds)
        with pyshl.zeros((workers, bins), np.int32, track=False) as rows:
            seconds = run_workers(w_own_row, lambda w, barrier, lock: (
                rows.name, barrier, w, batches, count, bins), workers)
            start = time.perf_counter()
            total = rows.sum(axis=0)
            seconds += time.perf_counter() - start
            if total.tolist() != expected.tolist():
                raise SystemExit("own rows lost updates")
        rates["own rows with np.add.at, parent sums (no atomics)"].append(
            workers * batches * count / seconds)
    return [(label, statistics.median(kept)) for label, kept in rates.items()]


# -- one element per call -------------------------------------------------------------

def fetch_add_rows(number=200_000):
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(pyshl.zeros(64, np.int64, track=False))
        sl = stack.enter_context(pyshl.ShareableList([0] * 64, track=False))
        namespace = {"fa": pyshl.fetch_add, "a": a, "sl_fa": sl.fetch_add}
        contenders = [("pyshl.fetch_add(a, 7, 1)", "fa(a, 7, 1)"),
                      ("pyshl sl.fetch_add(7, 1) (a list)", "sl_fa(7, 1)")]
        if atomicshm is not None:
            shm = std_shared_memory.SharedMemory(create=True, size=4096)
            stack.callback(shm.unlink)
            stack.callback(shm.close)
            view = atomicshm.AtomicView(shm.buf)
            stack.callback(view.close)
            namespace["asm_fa"] = view.fetch_add_u64
            contenders.append(("atomicshm view.fetch_add_u64(56, 1)", "asm_fa(56, 1)"))
        setup = "; ".join("%s = _ns[%r]" % (k, k) for k in namespace)
        timers = [timeit.Timer(stmt, setup=setup, globals={"_ns": namespace})
                  for _, stmt in contenders]
        for t in timers:
            t.timeit(number)
        times = [[] for _ in timers]
        for _ in range(9):
            for t, kept in zip(timers, times):
                kept.append(t.timeit(number) / number)
        return [(label, statistics.median(kept)) for (label, _), kept in zip(contenders, times)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--big-gigabytes", type=float, default=1.0)
    args = parser.parse_args()
    if atomicshm is None:
        print("atomicshm is not installed (pip install -e \".[bench]\", Python 3.11+): "
              "its row is skipped\n")

    rows = creation_rows(args.megabytes)
    print("A shared copy of a %d MB float64 array (ms, median):\n" % args.megabytes)
    print("| how | ms | speed vs by hand |\n|---|---:|---:|")
    for label, seconds in rows:
        print("| %s | %.1f | %.2f× |" % (label, seconds * 1e3, rows[0][1] / seconds))

    print("\nAttaching by name (µs per attach, median):\n")
    print("| array | SharedMemory + np.ndarray (by hand) | pyshl.attach |\n|---|---:|---:|")
    for label, hand, ours in attach_rows(args.big_gigabytes):
        print("| %s | %.1f | %.1f |" % (label, hand * 1e6, ours * 1e6))

    print("\nadd_at, one process (M updates/s, median; np.add.at with a value of the "
          "array's dtype, NumPy's fast path, and with a Python scalar):\n")
    print("| case | pyshl.add_at | np.add.at, typed value | np.add.at, Python scalar "
          "| np.bincount | vs typed | vs scalar |\n|---|---:|---:|---:|---:|---:|---:|")
    for label, count, times in one_process_rows():
        rates = [count / t / 1e6 if t else None for t in times]
        print("| %s | %.0f | %.0f | %.0f | %s | %.2f× | %.1f× |" % (
            label, rates[0], rates[1], rates[2], "%.0f" % rates[3] if rates[3] else "-",
            rates[0] / rates[1], rates[0] / rates[2]))

    rows = worker_rows(args.workers)
    print("\n%d worker processes, 10 batches of 1M indices each into 256 int32 bins "
          "(M updates/s, median):\n" % args.workers)
    print("| how | M updates/s | ratio |\n|---|---:|---:|")
    for label, rate in rows:
        print("| %s | %.0f | %.2f× |" % (label, rate / 1e6, rate / rows[1][1]))

    print("\nOne int64 element per call (ns, median):\n")
    rows = fetch_add_rows()
    print("| call | ns |\n|---|---:|")
    for label, seconds in rows:
        print("| %s | %.1f |" % (label, seconds * 1e9))


if __name__ == "__main__":
    main()
