"""The engines people run workers with: joblib (loky) and dask.distributed,
with real worker processes.  Each passes lists and views to workers, checks
exact totals, loses a worker, and leaves no segment and no tracker warning
(each scenario runs as a script in a fresh interpreter, so that what its
resource tracker prints at exit is seen)."""
import subprocess
import sys
import textwrap

import pytest

from helpers import CAPTURE

QUIET = ("Traceback", "resource_tracker", "leaked")


def run_scenario(code, tmp_path, timeout=300):
    script = tmp_path / "scenario.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.run([sys.executable, str(script)], **CAPTURE, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for word in QUIET:
        assert word not in proc.stderr, proc.stderr
    return proc.stdout


def test_joblib_loky_workers_aggregate_into_lists_and_views(tmp_path):
    pytest.importorskip("joblib")
    out = run_scenario("""
        import os
        import numpy as np
        from joblib import Parallel, delayed
        from pyshl import ShareableList

        def add_batch(hist, seed):
            rng = np.random.default_rng(seed)
            hist.add_at(rng.integers(0, len(hist), 100_000), 1)

        def fill(window, value):
            window[...] = value        # a 2 MB window: joblib would memmap a plain array
            return os.getpid()

        if __name__ == "__main__":
            with ShareableList([0] * 256) as hist, \\
                    ShareableList(np.zeros(1_000_000, dtype=np.int64)) as big:
                Parallel(n_jobs=2, backend="loky")(delayed(add_batch)(hist, s) for s in range(8))
                expected = sum(np.bincount(np.random.default_rng(s).integers(0, 256, 100_000),
                                           minlength=256) for s in range(8))
                assert hist.tolist() == expected.tolist()
                view = big.view()
                pids = Parallel(n_jobs=2, backend="loky")(
                    delayed(fill)(view[k:k + 250_000], k // 250_000 + 1)
                    for k in range(0, 1_000_000, 250_000))
                assert os.getpid() not in pids
                assert big.count(1) == big.count(4) == 250_000
                print("ok")
    """, tmp_path)
    assert out.strip() == "ok"


def test_joblib_losing_a_worker_loses_no_segment(tmp_path):
    pytest.importorskip("joblib")
    run_scenario("""
        import os
        from joblib import Parallel, delayed
        from joblib.externals.loky.process_executor import TerminatedWorkerError
        from pyshl import ShareableList

        def add_or_die(counts, k):
            if k == 3:
                os._exit(1)            # a worker dies in the middle
            counts.fetch_add(0, 1)

        if __name__ == "__main__":
            with ShareableList([0]) as counts:
                try:
                    Parallel(n_jobs=2, backend="loky")(
                        delayed(add_or_die)(counts, k) for k in range(6))
                except TerminatedWorkerError:
                    pass
                else:
                    raise AssertionError("the worker's death went unnoticed")
                assert 0 <= counts[0] <= 5
                Parallel(n_jobs=2, backend="loky")(        # the pool starts afresh
                    delayed(add_or_die)(counts, 0) for _ in range(4))
    """, tmp_path)


def test_dask_distributed_workers_aggregate_and_survive_a_restart(tmp_path):
    pytest.importorskip("distributed")
    out = run_scenario("""
        import dask
        import numpy as np
        from dask.distributed import Client, LocalCluster
        from pyshl import ShareableList

        def add_batch(hist, seed):
            rng = np.random.default_rng(seed)
            hist.add_at(rng.integers(0, len(hist), 50_000), 1)
            return seed

        def fill(window, value):
            window[...] = value
            return int(window.sum())

        if __name__ == "__main__":
            # dask's sampling profiler thread reads other threads' frames, which
            # free-threaded CPython may show half made (it then prints a
            # traceback): it has nothing to do with this test.
            dask.config.set({"distributed.worker.profile.enabled": False})
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                with ShareableList([0] * 64) as hist, ShareableList([0] * 1000) as cells:
                    seeds = client.gather(client.map(add_batch, [hist] * 6, range(6),
                                                     pure=False))
                    assert sorted(seeds) == list(range(6))
                    expected = sum(np.bincount(np.random.default_rng(s).integers(0, 64, 50_000),
                                               minlength=64) for s in range(6))
                    assert hist.tolist() == expected.tolist()
                    view = cells.view()
                    sums = client.gather([client.submit(fill, view[k:k + 100], k, pure=False)
                                          for k in range(0, 1000, 100)])
                    assert sums == [100 * k for k in range(0, 1000, 100)]
                    assert cells[250] == 200 and cells[999] == 900
                    client.restart()           # every worker process replaced
                    client.submit(add_batch, hist, 0, pure=False).result()
                    assert sum(hist.tolist()) == 6 * 50_000 + 50_000
            print("ok")
    """, tmp_path, timeout=600)
    assert out.strip().endswith("ok")
