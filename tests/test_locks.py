"""sl.lock(i): a mutex in one int item, across threads and processes, that
survives its holder's death."""
import gc
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import warnings

import pytest

import pyshl
from helpers import run_python
from pyshl import LockRecoveredWarning

# A lock item, two balances and a transfer counter: the classic bank example.
LOCK, A, B, TRANSFERS = 0, 1, 2, 3


def _transfer(sl, rounds, start):
    lock = sl.lock(LOCK)
    start.wait()
    for k in range(rounds):
        amount = k % 7 + 1
        with lock:                       # a compound update: three items
            sl[A] -= amount
            sl[B] += amount
            sl[TRANSFERS] += 1


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_mutual_exclusion_across_processes(make, method):
    sl = make([0, 1_000_000, 0, 0])
    ctx = multiprocessing.get_context(method)
    start = ctx.Event()
    procs = [ctx.Process(target=_transfer, args=(sl, 5000, start)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sl[TRANSFERS] == 20_000 and sl[A] + sl[B] == 1_000_000
    assert sl[A] == 1_000_000 - 4 * sum(k % 7 + 1 for k in range(5000))
    assert sl[LOCK] == 0 and not sl.lock(LOCK).locked()


def test_threads_of_one_process_exclude_each_other(make):
    sl = make([0, 0])
    lock = sl.lock(0)
    counts = [0]

    def work():
        for _ in range(3000):
            with lock:
                value = counts[0]
                time.sleep(0) if value % 1000 == 0 else None
                counts[0] = value + 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts[0] == 12_000


def test_api_like_threading_lock(make):
    sl = make([0, 2.5, "text"])
    lock = sl.lock(0)
    assert not lock.locked() and lock.acquire() and lock.locked()
    assert sl[0] == lock._claim_id() != 0        # the holder's claim id
    assert lock.acquire(False) is False and lock.acquire(timeout=0.01) is False
    with pytest.raises(RuntimeError, match="holds the lock"):
        lock.acquire()                   # would wait forever
    lock.release()
    with pytest.raises(RuntimeError, match="does not hold"):
        lock.release()
    with pytest.raises(ValueError):
        lock.acquire(False, 1)
    with pytest.raises(ValueError):
        lock.acquire(timeout=-2)
    with lock:
        assert lock.locked()
    assert not lock.locked() and sl[0] == 0
    with pytest.raises(TypeError, match="int item"):
        sl.lock(1)
    with pytest.raises(TypeError):
        sl.lock(2)
    with pytest.raises(IndexError):
        sl.lock(3)
    assert isinstance(lock, pyshl.Lock) and "item 0" in repr(lock)


def _hold(sl, held, release):
    lock = sl.lock(0)
    lock.acquire()
    held.set()
    release.wait(30)
    lock.release()


def test_timeouts_are_honoured(make):
    sl = make([0])
    ctx = multiprocessing.get_context("fork")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(sl, held, release))
    holder.start()
    try:
        assert held.wait(30)
        lock = sl.lock(0)
        assert lock.acquire(False) is False
        start = time.monotonic()
        assert lock.acquire(timeout=0.3) is False
        assert 0.29 <= time.monotonic() - start < 2     # a loose bound: a noisy machine
        release.set()
        assert lock.acquire(timeout=30)
        lock.release()
    finally:
        release.set()
        holder.join(30)


def _hold_forever(sl, held):
    sl.lock(0).acquire()
    held.set()
    time.sleep(300)


def test_a_killed_holder_does_not_wedge_the_lock(make):
    sl = make([0, 0])
    ctx = multiprocessing.get_context("fork")
    held = ctx.Event()
    holder = ctx.Process(target=_hold_forever, args=(sl, held))
    holder.start()
    assert held.wait(30)
    holder_tid = sl[0]
    os.kill(holder.pid, signal.SIGKILL)
    lock = sl.lock(0)                    # (the holder is a zombie until joined)
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert lock.acquire(timeout=30)
    assert time.monotonic() - start < 2                 # taken over within ~0.1 s
    assert lock.recovered and sl[0] != holder_tid
    assert any(issubclass(w.category, LockRecoveredWarning) for w in caught)
    lock.release()
    assert lock.acquire() and not lock.recovered
    lock.release()
    holder.join(30)


def _wait_on(sl, timeout, done):
    sl.lock(0).acquire(timeout=timeout)
    done.put(os.times()[0] + os.times()[1])


def test_waiters_sleep_instead_of_spinning(make):
    sl = make([0])
    lock = sl.lock(0)
    lock.acquire()
    ctx = multiprocessing.get_context("fork")
    done = ctx.Queue()
    waiters = [ctx.Process(target=_wait_on, args=(sl, 1.0, done)) for _ in range(3)]
    for p in waiters:
        p.start()
    cpu = [done.get(timeout=60) for _ in waiters]
    for p in waiters:
        p.join(30)
    lock.release()
    assert sum(cpu) < 0.5, cpu           # three processes waited a second each


def _use_pickled(payload, results):
    lock = pickle.loads(payload)
    with lock:
        lock.list[1] += 1
    results.put(lock.index)
    lock.list.close()


def test_a_pickled_lock_works_in_any_process(make):
    sl = make([0, 0])
    lock = sl.lock(0)
    payload = pickle.dumps(lock)
    assert len(payload) < 1024
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_use_pickled, args=(payload, results)) for _ in range(3)]
    for p in procs:
        p.start()
    assert [results.get(timeout=60) for _ in procs] == [0, 0, 0]
    for p in procs:
        p.join(30)
    assert sl[1] == 3 and not lock.locked()


def test_forked_children_do_not_hold_their_parents_lock(make):
    sl = make([0, 0])
    lock = sl.lock(0)
    lock.acquire()
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            if lock.acquire(timeout=0.05):
                status = 1                 # the parent holds it: no
            try:
                lock.release()
                status = 2                 # not the child's to release
            except RuntimeError:
                pass
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    lock.release()


def test_a_held_lock_is_its_own_item_and_no_other(make):
    sl = make([0, 0, 0])
    lock = sl.lock(1)
    with lock:
        assert sl[1] & 0x3FFFFFFF == lock._claim_id() != 0
        assert sl[0] == sl[2] == 0      # the neighbours are untouched
    assert sl.tolist() == [0, 0, 0]


def test_bad_timeouts_raise_as_threading_lock_does(make):
    lock = make([0]).lock(0)
    for timeout, error in [(float("nan"), ValueError), (float("inf"), OverflowError),
                           (1e300, OverflowError), (2.0 ** 63, OverflowError)]:
        with pytest.raises(error):
            threading.Lock().acquire(timeout=timeout)
        with pytest.raises(error):
            lock.acquire(timeout=timeout)
        assert not lock.locked()
    lock.acquire()
    with pytest.raises(ValueError, match="NaN"):     # before: waited forever, no deadlock check
        lock.acquire(timeout=float("nan"))
    lock.release()
    assert lock.acquire(timeout=threading.TIMEOUT_MAX)      # the largest allowed
    lock.release()


CTRL_C_CHILD = """
import sys, threading, time
import pyshl
sl = pyshl.ShareableList([0])
lock = sl.lock(0)
held, done = threading.Event(), threading.Event()
def hold():
    with lock:
        held.set()
        done.wait(60)
holder = threading.Thread(target=hold)
holder.start()
held.wait(60)
try:
    print("waiting", flush=True)
    lock.acquire()
    print("acquired")
except KeyboardInterrupt:
    print("interrupted")
    try:
        lock.release()
    except RuntimeError:
        print("not held by the interrupted thread")
    print("holder still holds" if lock.locked() else "nobody holds")
finally:
    done.set()
    holder.join()
    sl.shm.close()
    sl.unlink()
"""


def test_ctrl_c_interrupts_a_blocked_acquire():
    child = subprocess.Popen([sys.executable, "-c", CTRL_C_CHILD], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True)
    try:
        assert child.stdout.readline() == "waiting\n"
        time.sleep(0.3)                      # well into the wait
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert out.splitlines() == ["interrupted", "not held by the interrupted thread",
                                "holder still holds"]


@pytest.mark.parametrize("close", ["list", "shm"])
def test_closing_a_list_while_holding_its_lock_does_not_wedge_it(make, close):
    sl = make([0, 7])
    lock = sl.lock(0)
    lock.acquire()
    sl.close() if close == "list" else sl.shm.close()
    with pytest.raises(ValueError, match="closed"):
        sl[1]
    lock.release()                   # before: ValueError, and the item held for ever
    other = pyshl.ShareableList(name=sl.shm.name)
    try:
        assert other.lock(0).acquire(timeout=5)
        other.lock(0).release()
        assert other[0] == 0 and other[1] == 7
    finally:
        other.shm.close()
    with pytest.raises(ValueError, match="closed"):
        lock.acquire()
    with pytest.raises(ValueError, match="closed"):
        lock.release()               # nothing held through it now


def test_a_closed_lists_lock_is_released_by_its_holder_through_any_of_its_locks(make):
    sl = make([0])
    taker, other = sl.lock(0), sl.lock(0)
    taker.acquire()
    sl.close()
    with pytest.raises(ValueError, match="closed"):
        other.acquire(timeout=1)
    other.release()                  # the holder thread, through another Lock
    with pytest.raises(ValueError, match="closed"):
        taker.release()              # held no more
    again = pyshl.ShareableList(name=sl.shm.name)
    assert not again.lock(0).locked()
    again.shm.close()


def test_a_waiter_raises_once_its_list_is_closed(make):
    sl = make([0])
    other = pyshl.ShareableList(name=sl.shm.name)
    outcome = []

    def wait():
        try:
            outcome.append(other.lock(0).acquire(timeout=30))
        except ValueError as exc:
            outcome.append(str(exc))

    with sl.lock(0):
        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.2)
        other.close()
        waiter.join(30)
    assert outcome == ["operation on a closed ShareableList"]
    assert not sl.lock(0).locked()
    other.shm.close()


def test_a_thread_that_ends_holding_the_lock_is_taken_over(make):
    sl = make([0])
    lock = sl.lock(0)
    holder = threading.Thread(target=lock.acquire)
    holder.start()
    holder.join()                    # ended holding it: its claim went with it
    assert lock.locked()
    with pytest.warns(LockRecoveredWarning):
        assert lock.acquire(timeout=30)
    assert lock.recovered
    lock.release()


FORKING_HOLDER = """
import os, sys, time
import pyshl
sl = pyshl.ShareableList(name=sys.argv[1])
sl.lock(0).acquire()
child = os.fork()
if child == 0:
    time.sleep(600)          # lives on, holding the descriptors it inherited
    os._exit(0)
print(child, flush=True)
time.sleep(600)
"""


def test_a_dead_holders_lock_is_recovered_while_its_forked_child_lives(make):
    sl = make([0])
    holder = subprocess.Popen([sys.executable, "-c", FORKING_HOLDER, sl.shm.name],
                              stdout=subprocess.PIPE, universal_newlines=True)
    child = int(holder.stdout.readline())
    try:
        lock = sl.lock(0)
        assert lock.acquire(timeout=0.3) is False
        holder.kill()
        holder.wait(60)
        with pytest.warns(LockRecoveredWarning):
            assert lock.acquire(timeout=30)     # before the child closed them: never
        lock.release()
    finally:
        os.kill(child, signal.SIGKILL)       # first: it holds the pipe open too
        holder.kill()
        holder.communicate()


def test_a_read_only_list_of_the_same_segment_cannot_release_or_take_the_lock(make):
    # In a child process: a release that wrote into the read-only mapping
    # would kill it (SIGSEGV).
    sl = make([0])
    proc = run_python("""
        import pyshl
        sl = pyshl.ShareableList(name=%r)
        read_only = pyshl.ShareableList(name=%r, readonly=True)
        lock = sl.lock(0)
        lock.acquire()          # this thread's claim on the file: the same for both lists
        for call in (read_only.lock(0).release, read_only.lock(0).acquire,
                     read_only.lock(0).__enter__):
            try:
                call()
                print("no error")
            except TypeError as exc:
                print("TypeError" if "readonly" in str(exc) else exc)
        print(read_only.lock(0).locked())
        lock.release()
        read_only.shm.close()
        sl.shm.close()
    """ % (sl.shm.name, sl.shm.name))
    assert proc.stdout.split() == ["TypeError"] * 3 + ["True"]


def test_claims_go_with_the_last_list_of_a_segment_in_a_process(make):
    sl = make([0])
    name = sl.shm.name
    temporary = pyshl.ShareableList(name=name)
    held = temporary.lock(0)
    assert held.acquire()
    del held, temporary              # this process's only other list of it: the claim goes
    gc.collect()
    again = pyshl.ShareableList(name=name)
    try:
        with pytest.warns(LockRecoveredWarning):
            assert again.lock(0).acquire(timeout=30)
        again.lock(0).release()
    finally:
        again.shm.close()
