"""Lists travel to Pool, ProcessPoolExecutor and Process workers; the manager cleans up."""
import concurrent.futures
import multiprocessing
import sys

import pytest

import pyshl
from helpers import run_python, segment_exists
from pyshl import ShareableList, SharedMemoryManager

METHODS = ["spawn", "fork", "forkserver"]


def _work(args):
    sl, i = args
    sl.fetch_add(0, 1)
    sl[i] = "done %d" % i
    return sl.shm.name


def _process_work(sl):
    _work((sl, 1))


@pytest.mark.parametrize("method", METHODS)
def test_pool(make, method):
    sl = make([0] + ["pending"] * 8)
    with multiprocessing.get_context(method).Pool(2) as pool:
        names = pool.map(_work, [(sl, i) for i in range(1, 9)])
    assert set(names) == {sl.shm.name}
    assert sl.tolist() == [8] + ["done %d" % i for i in range(1, 9)]


@pytest.mark.skipif(sys.version_info < (3, 7),
                    reason="ProcessPoolExecutor takes mp_context from Python 3.7")
@pytest.mark.parametrize("method", METHODS)
def test_process_pool_executor(make, method):
    sl = make([0] + ["pending"] * 4)
    context = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as executor:
        list(executor.map(_work, [(sl, i) for i in range(1, 5)]))
    assert sl.tolist() == [4] + ["done %d" % i for i in range(1, 5)]


@pytest.mark.parametrize("method", METHODS)
def test_process(make, method):
    sl = make([0, "pending"])
    proc = multiprocessing.get_context(method).Process(target=_process_work, args=(sl,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert sl.tolist() == [1, "done 1"]


def _manager_worker(sl):
    sl.fetch_add(0, 10)


def test_manager_hands_out_pyshl_lists_and_unlinks_them():
    with SharedMemoryManager() as smm:
        sl = smm.ShareableList([0, "x", None])
        shm = smm.SharedMemory(128)
        assert type(sl) is ShareableList and isinstance(shm, pyshl.SharedMemory)
        assert shm.size == 128
        proc = multiprocessing.get_context("spawn").Process(target=_manager_worker, args=(sl,))
        proc.start()
        proc.join(60)
        assert sl[0] == 10
        early = smm.ShareableList([1])
        early.close()
        early.unlink()                     # unlinked before shutdown: skipped then
        names = [sl.shm.name, shm.name]
        assert all(segment_exists(n) for n in names)
    assert not any(segment_exists(n) for n in names)
    sl.close()
    shm.close()


def test_manager_leaves_no_tracker_warnings():
    proc = run_python("""
        from pyshl import SharedMemoryManager
        with SharedMemoryManager() as smm:
            lists = [smm.ShareableList(list(range(i + 1))) for i in range(5)]
            blocks = [smm.SharedMemory(64) for _ in range(3)]
            lists[0].unlink()
            print(lists[4].tolist())
        manager = SharedMemoryManager()
        manager.start()
        kept = manager.ShareableList(["x"])
        manager.shutdown()
    """)
    assert proc.stdout.strip() == "[0, 1, 2, 3, 4]"
    assert proc.stderr == ""


def test_track_false_is_the_stdlib_track_false():
    # A segment created untracked survives its creator's exit, without warnings,
    # in pyshl on every Python and in the standard library on 3.13+.
    code = """
        import sys
        import pyshl
        ours = pyshl.SharedMemory(create=True, size=16, track=False)
        print(ours.name)
        if sys.version_info >= (3, 13):
            from multiprocessing import shared_memory
            theirs = shared_memory.SharedMemory(create=True, size=16, track=False)
            print(theirs.name)
    """
    proc = run_python(code)
    names = proc.stdout.split()
    assert proc.stderr == ""
    for name in names:
        assert segment_exists(name)
        shm = pyshl.SharedMemory(name)
        shm.close()
        shm.unlink()
    assert not any(segment_exists(n) for n in names)


def test_shared_memory_track_true_registers_like_the_stdlib():
    proc = run_python("""
        import pyshl
        creator = pyshl.SharedMemory(create=True, size=16, track=False)
        attached = pyshl.SharedMemory(creator.name, track=True)   # takes ownership
        print(creator.name)
    """)
    assert not segment_exists(proc.stdout.strip())
    assert "leaked shared_memory" in proc.stderr
