"""Shared arrays travel by reference, always: pickles of a few hundred bytes
that unpickle as windows onto the same memory, through every start method and
engine; stale references fail clearly."""
import concurrent.futures
import multiprocessing
import pickle
import sys

import numpy as np
import pytest
from test_engines import run_scenario

import pyshl

METHODS = ["spawn", "fork", "forkserver"]

WINDOWS = {
    "whole": lambda a: a,
    "rows": lambda a: a[1:3],
    "stepped": lambda a: a[::2, ::-3],
    "transposed": lambda a: a.T,
    "reshaped": lambda a: a.reshape(-1)[5:40],
    "retyped": lambda a: a.view(np.int16),
    "column": lambda a: a[:, 4],
    "element": lambda a: a[2:3, 7:8],
}


@pytest.mark.parametrize("window", list(WINDOWS), ids=list(WINDOWS))
def test_windows_pickle_small_and_land_on_the_same_memory(shared, window):
    a = shared(pyshl.zeros, (2000, 1000), np.float32)      # 8 MB
    w = WINDOWS[window](a)
    data = pickle.dumps(w)
    assert len(data) < 1024
    copy = pickle.loads(data)
    assert isinstance(copy, pyshl.SharedArray)
    assert copy.dtype == w.dtype and copy.shape == w.shape and copy.strides == w.strides
    copy[...] = 3
    assert (w == 3).all() and np.shares_memory(copy, w) is False   # another mapping
    assert copy.__array_interface__["data"][0] != w.__array_interface__["data"][0]


def test_results_are_ordinary_arrays(shared):
    a = shared(pyshl.full, (100, 100), 2.0)
    for result in (a + 1, a.sum(axis=0), a.copy(), np.sqrt(a), a * a):
        assert type(result) is np.ndarray
        assert len(pickle.dumps(result)) > result.nbytes   # by value
    assert type(a.sum()) is not pyshl.SharedArray


def _scale(args):
    window, factor = args
    window *= factor
    pyshl.add_at(window, np.zeros(10, np.int64), 1)
    return float(window.sum())


@pytest.mark.parametrize("method", METHODS)
def test_pool_workers_write_through_shared_arrays(shared, method):
    a = shared(pyshl.full, (4, 50), 1, np.int32)
    with multiprocessing.get_context(method).Pool(2) as pool:
        pool.map(_scale, [(a[k], k + 2) for k in range(4)])
    assert a[:, 0].tolist() == [k + 2 + 10 for k in range(4)]
    assert a[:, 1:].tolist() == [[k + 2] * 49 for k in range(4)]


@pytest.mark.skipif(sys.version_info < (3, 7), reason="mp_context is Python 3.7's")
@pytest.mark.parametrize("method", METHODS)
def test_process_pool_executor(shared, method):
    a = shared(pyshl.zeros, (4, 10), np.float32)
    context = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as executor:
        list(executor.map(_scale, [(a[k], 1) for k in range(4)]))
    assert a[:, 0].tolist() == [10.0] * 4


@pytest.mark.parametrize("imports", ["import numpy as np\nimport pyshl",
                                     "import pyshl\nimport numpy as np"],
                         ids=["numpy-first", "pyshl-first"])
def test_a_plain_array_over_shared_memory_travels_in_a_fresh_process(tmp_path, imports):
    # Nothing but SharedMemory and np.ndarray ran before the pool: the
    # reducer is registered by `import pyshl`, whether NumPy came before it
    # or after.
    run_scenario("""
        import multiprocessing
        IMPORTS

        def fill(window):
            window[...] = 4.5
            return True

        if __name__ == "__main__":
            shm = pyshl.SharedMemory(create=True, size=4 * 100)
            try:
                a = np.ndarray((100,), np.float32, buffer=shm.buf)
                a[...] = 0
                with multiprocessing.get_context("spawn").Pool(2) as pool:
                    assert all(pool.map(fill, [a[:50], a[50:]]))
                assert (a == 4.5).all(), np.abs(a - 4.5).max()
                other = np.zeros(3)
                with multiprocessing.get_context("spawn").Pool(1) as pool:
                    pool.map(fill, [other])
                assert not other.any()        # private memory still goes by value
            finally:
                shm.close()
                shm.unlink()
    """.replace("IMPORTS", imports.replace("\n", "\n        ")), tmp_path)


def test_a_stale_reference_fails_instead_of_writing_into_a_new_segment():
    a = pyshl.zeros(100, np.int64, name="psm_test_stale")
    data = pickle.dumps(a[10:20])
    a.unlink()
    with pytest.raises(FileNotFoundError):
        pickle.loads(data)
    b = pyshl.zeros(100, np.int64, name="psm_test_stale")
    try:
        with pytest.raises(ValueError, match="replaced"):
            pickle.loads(data)
        assert not b.any()
    finally:
        b.unlink()


def test_an_unpickled_array_is_not_the_creator(shared):
    a = shared(pyshl.zeros, 4)
    with pickle.loads(pickle.dumps(a)) as b:
        b[0] = 1
    assert pyshl.attach(a.name)[0] == 1            # still there


def test_joblib_and_dask_workers_aggregate_into_a_compact_histogram(tmp_path):
    pytest.importorskip("joblib")
    code = """
        import numpy as np
        import pyshl
        from joblib import Parallel, delayed

        def add_batch(hist, seed):
            rng = np.random.default_rng(seed)
            pyshl.add_at(hist, rng.integers(0, hist.shape[0], 50_000), 1)
            pyshl.add_at(hist, (rng.integers(0, 8, 1000), rng.integers(0, 4, 1000)), 1)
            return seed

        def bump(row):
            pyshl.add_at(row, [0, 1, 1], 1)
            return True

        def expected(seeds, shape):
            out = np.zeros(shape, np.int64)
            for s in seeds:
                rng = np.random.default_rng(s)
                np.add.at(out, rng.integers(0, shape[0], 50_000), 1)
                np.add.at(out, (rng.integers(0, 8, 1000), rng.integers(0, 4, 1000)), 1)
            return out

        if __name__ == "__main__":
            with pyshl.zeros((8, 4), np.int32) as hist:
                Parallel(n_jobs=2, backend="loky")(delayed(add_batch)(hist, s)
                                                   for s in range(6))
                assert (hist == expected(range(6), (8, 4))).all()
                with pyshl.zeros(1000, np.float32) as f:
                    Parallel(n_jobs=2)(delayed(np.multiply)(f[k:k + 100], 0, out=f[k:k + 100])
                                       for k in range(0, 1000, 100))
            DASK
            print("ok")
    """
    dask = """
            try:
                import dask
                from dask.distributed import Client, LocalCluster
            except ImportError:
                pass
            else:
                dask.config.set({"distributed.worker.profile.enabled": False})
                with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, Client(cluster) as client:
                    with pyshl.zeros((8, 4), np.int32) as hist:
                        client.gather(client.map(add_batch, [hist] * 4, range(4), pure=False))
                        assert (hist == expected(range(4), (8, 4))).all()
                        before = hist.copy()
                        client.gather(client.map(bump, [hist[k] for k in range(8)], pure=False))
                        assert (hist - before)[:, :2].tolist() == [[1, 2]] * 8
    """
    import textwrap
    code = textwrap.dedent(code).replace("    DASK\n", textwrap.indent(textwrap.dedent(dask),
                                                                       "    "))
    out = run_scenario(code, tmp_path, timeout=600)
    assert out.strip().endswith("ok")


@pytest.mark.skipif(sys.version_info < (3, 7),
                    reason="Python 3.6 has no module __getattr__: import pyshl imports NumPy")
def test_find_spec_before_the_import_of_numpy_keeps_the_set_up(tmp_path):
    out = run_scenario("""
        import importlib.util, sys
        import pyshl
        assert importlib.util.find_spec("numpy") is not None
        assert "numpy" not in sys.modules
        import numpy as np
        from multiprocessing.reduction import ForkingPickler
        assert np.ndarray in ForkingPickler._extra_reducers
        assert pyshl.fetch_add(np.zeros(3, np.int64), 1, 2) == 0
        assert type(np.__loader__).__name__ != "_AfterExec"
        assert not [f for f in sys.meta_path if type(f).__name__ == "_NumpyWatcher"]
        print("ok")
    """, tmp_path)
    assert out.strip() == "ok"
