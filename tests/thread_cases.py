"""The threaded cases of test_threads.py, run in a child process:
``python thread_cases.py CASE ROUNDS``.

A "close" case runs eight threads that repeat one call on a list while a
ninth closes it (or its ``shm``) at a random moment: each call must complete
correctly or raise ValueError naming "closed".  A "total" case has eight
threads update shared numbers and checks the exact result.  A "torn" case has
writers store str or bytes items of different lengths while readers check
that every value read is one that some writer wrote.

Prints "ok CASE" and exits 0, or prints what went wrong and exits 1; a crash
kills the child, and the test names the case.
"""
import random
import sys
import threading
import time

import numpy as np

from pyshl import ShareableList

THREADS = 8

INTS = list(range(32))
MIXED = [1, 2.5, "text", b"raw", None, True, "ünïcödé", 7] * 4


def _lock_cycle(sl):
    with sl.lock(0):
        pass


def _read_view(sl):
    view = sl.view(0, 16)
    total = int(view.sum())           # the view keeps the memory mapped after close
    view[1] = 1
    return total


# name -> (items, the call each thread repeats)
CALLS = {
    "sl[i]": (MIXED, lambda sl: sl[random.randrange(32)]),
    "sl[i] = int": (INTS, lambda sl: sl.__setitem__(3, 7)),
    "sl[i] = str": (MIXED, lambda sl: sl.__setitem__(2, random.choice(["ab", "cdef", "é"]))),
    "sl[a:b]": (MIXED, lambda sl: sl[2:9]),
    "sl[a:b] = seq": (INTS, lambda sl: sl.__setitem__(slice(0, 3), [1, 2, 3])),
    "list(sl)": (MIXED, list),
    "tolist()": (MIXED, lambda sl: sl.tolist()),
    "len(sl)": (MIXED, len),
    "count(int)": (INTS, lambda sl: sl.count(5)),
    "count(str)": (MIXED, lambda sl: sl.count("text")),
    "index(bytes)": (MIXED, lambda sl: sl.index(b"raw")),
    "x in sl": (MIXED, lambda sl: None in sl),
    "format": (MIXED, lambda sl: sl.format),
    "repr(sl)": (MIXED, repr),
    "view()": (INTS, _read_view),
    "np.asarray(sl)": (INTS, lambda sl: np.asarray(sl).sum()),
    "fetch_add": (INTS, lambda sl: sl.fetch_add(random.randrange(32), 1)),
    "fetch_add(np.int64)": (INTS, lambda sl: sl.fetch_add(4, np.int64(1))),
    "compare_exchange": (INTS, lambda sl: sl.compare_exchange(5, 5, 5)),
    "load": (INTS, lambda sl: sl.load(6)),
    "store": (INTS, lambda sl: sl.store(6, 6)),
    "cell.fetch_add": (INTS, lambda sl: sl.cell(7).fetch_add(1)),
    "cell.load": (INTS, lambda sl: sl.cell(7).load()),
    "with lock": (INTS, _lock_cycle),
    "add_at": (INTS, lambda sl: sl.add_at(np.arange(8, 16), 1)),
    "add_at(many)": (INTS, lambda sl: sl.add_at(np.random.randint(0, 32, 5000), 1)),
}

CLOSERS = {
    "close": lambda sl: sl.close(),
    "shm.close": lambda sl: sl.shm.close(),
}


def _expected(exc):
    # A closed list refuses with ValueError naming "closed"; fetch_add of an
    # int too large for an int item is refused with TypeError.
    return (isinstance(exc, ValueError) and "closed" in str(exc)) or \
        (isinstance(exc, TypeError) and "float" in str(exc))


def close_case(call_name, closer_name, rounds):
    items, call = CALLS[call_name]
    problems = []
    current = []
    # The same threads race a new list each round (starting threads costs
    # more than a round): many close events per case.
    # (a timeout: a thread that died would otherwise leave the others waiting)
    go = threading.Barrier(THREADS + 1, timeout=60)
    done = threading.Barrier(THREADS + 1, timeout=60)
    calls = [0] * THREADS        # per thread: calls made this round

    def worker(me):
        for _ in range(rounds):
            go.wait()
            sl = current[-1]
            for j in range(5000):
                calls[me] = j
                try:
                    call(sl)
                except Exception as exc:      # noqa: BLE001 -- every error is checked
                    if not _expected(exc):
                        problems.append("%s: %r" % (call_name, exc))
                    break
            del sl
            done.wait()

    threads = [threading.Thread(target=worker, args=(me,)) for me in range(THREADS)]
    for thread in threads:
        thread.start()
    for _ in range(rounds):
        sl = ShareableList(items)
        calls[:] = [0] * THREADS
        current.append(sl)
        go.wait()
        # Close while the threads are in the middle of their calls.
        busy = random.randrange(1, 20)
        deadline = time.monotonic() + 1
        while sum(1 for c in calls if c >= busy) < THREADS // 2 and time.monotonic() < deadline:
            pass
        CLOSERS[closer_name](sl)
        done.wait()
        sl.unlink()
        if not sl.closed:
            problems.append("the list is not closed after %s" % closer_name)
        current.clear()
        del sl
    for thread in threads:
        thread.join()
    return problems


def total_case(kind, rounds):
    problems = []
    per_thread = 20000
    if kind == "iterator":
        return _shared_iterator(rounds)
    for _ in range(rounds):
        sl = ShareableList([0] * 8)
        lock = sl.lock(7)

        def worker(sl, lock):
            if kind == "fetch_add":
                for _ in range(per_thread):
                    sl.fetch_add(0, 1)
            elif kind == "cell":
                cell = sl.cell(1)
                for _ in range(per_thread):
                    cell.fetch_add(1)
            elif kind == "add_at":
                for _ in range(20):
                    sl.add_at(np.zeros(per_thread // 20, np.int64) + 2, 1)
            elif kind == "lock":
                for _ in range(per_thread // 10):
                    with lock:
                        sl[3] = sl[3] + 1      # a compound update: only the lock makes it exact

        threads = [threading.Thread(target=worker, args=(sl, lock)) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        want = THREADS * (per_thread // 10 if kind == "lock" else per_thread)
        got = sl[{"fetch_add": 0, "cell": 1, "add_at": 2, "lock": 3}[kind]]
        if got != want:
            problems.append("%s: total %d, expected %d" % (kind, got, want))
        sl.shm.close()
        sl.unlink()
    return problems


def _shared_iterator(rounds):
    """Threads drain one iterator: every item is read exactly once."""
    problems = []
    for _ in range(rounds):
        sl = ShareableList(list(range(20000)))
        iterator = iter(sl)
        seen = [[] for _ in range(THREADS)]

        threads = [threading.Thread(target=seen[me].extend, args=(iterator,))
                   for me in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        got = sorted(x for part in seen for x in part)
        if got != list(range(20000)):
            problems.append("a shared iterator gave %d items, %d distinct"
                            % (len(got), len(set(got))))
        sl.shm.close()
        sl.unlink()
    return problems


def torn_case(kind, rounds):
    if kind == "str":
        values = ["", "a", "ab" * 9, "ü" * 20, "€uro" * 5, "x" * 39, "日本語テキスト"]
    else:
        values = [b"", b"\x01", b"\xff" * 40, b"ab" * 7, bytes(range(1, 33))]
    known = set(values)
    problems = []
    for _ in range(rounds):
        sl = ShareableList([max(values, key=len)] * 4)
        stop = threading.Event()

        def writer(sl, stop):
            while not stop.is_set():
                sl[random.randrange(4)] = random.choice(values)

        def reader(sl):
            for _ in range(20000):
                try:
                    value = sl[random.randrange(4)]
                except UnicodeDecodeError as exc:
                    problems.append("torn %s: %r" % (kind, exc))
                    return
                if value not in known:
                    problems.append("torn %s: read %r, which nobody wrote" % (kind, value))
                    return

        threads = [threading.Thread(target=writer, args=(sl, stop)) for _ in range(THREADS // 2)]
        threads += [threading.Thread(target=reader, args=(sl,)) for _ in range(THREADS // 2)]
        for thread in threads:
            thread.start()
        for thread in threads[THREADS // 2:]:
            thread.join()
        stop.set()
        for thread in threads[:THREADS // 2]:
            thread.join()
        sl.shm.close()
        sl.unlink()
    return problems


def _array_worker(a, seed, per_thread):
    import pyshl
    rng = np.random.default_rng(seed)
    spread = rng.integers(0, a.shape[0], per_thread)
    for _ in range(per_thread // 20):
        pyshl.fetch_add(a, 3, 1)
        pyshl.compare_exchange(a, 5, -1, -2)      # never equal: a read
    for _ in range(5):
        pyshl.add_at(a, spread, 1)                # spread: update by update
        pyshl.add_at(a[:64], np.full(per_thread, 7), 1)   # combined


def _array_churn(name, stop):
    import pickle

    import pyshl
    while not stop.is_set():
        other = pyshl.attach(name)
        window = pickle.loads(pickle.dumps(other[100:200]))
        del other, window


def array_case(kind, rounds):
    """Eight threads update one shared array (exact totals checked) while a
    ninth attaches it by name, unpickles windows of it and drops them, and
    the last reference the main thread holds goes at the end of each round."""
    import pyshl

    problems = []
    per_thread = 4000
    for _ in range(rounds):
        a = pyshl.zeros(1 << 17, np.float32 if kind == "float" else np.int32)
        stop = threading.Event()
        threads = [threading.Thread(target=_array_worker, args=(a, k, per_thread))
                   for k in range(THREADS)]
        churner = threading.Thread(target=_array_churn, args=(a.name, stop))
        churner.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        churner.join()
        want = THREADS * (5 * per_thread * 2 + per_thread // 20)
        if int(a.astype(np.int64).sum()) != want:
            problems.append("array %s: total %d, expected %d" % (kind, a.sum(), want))
        a.unlink()
        del a, threads
    return problems


def cases():
    """Every case id: 'close|CALL|CLOSER', 'total|KIND', 'torn|KIND', 'array|KIND'."""
    ids = ["close|%s|%s" % (call, closer) for call in CALLS for closer in CLOSERS]
    ids += ["total|%s" % kind for kind in ("fetch_add", "cell", "add_at", "lock", "iterator")]
    ids += ["torn|str", "torn|bytes"]
    ids += ["array|int", "array|float"]
    return ids


def run(case, rounds):
    family, *args = case.split("|")
    if family == "close":
        return close_case(args[0], args[1], rounds)
    if family == "total":
        return total_case(args[0], rounds)
    if family == "array":
        return array_case(args[0], rounds)
    return torn_case(args[0], rounds)


if __name__ == "__main__":
    case, rounds = sys.argv[1], int(sys.argv[2])
    found = run(case, rounds)
    if found:
        print("\n".join(sorted(set(found))[:10]))
        sys.exit(1)
    print("ok", case)
