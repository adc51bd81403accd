"""fork: a child never unlinks its parent's segment, and the resource tracker
the two share stays consistent whichever of them unlinks first.

Each scenario runs in a fresh interpreter, so that what its resource tracker
prints at exit (a KeyError traceback, a "leaked" warning) is seen.
"""
import subprocess
import sys
import textwrap

import pytest

from helpers import CAPTURE, segment_exists

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork is tested on Linux")

TRACKER_NOISE = ("Traceback", "KeyError", "leaked", "resource_tracker", "Warning")


def run_quietly(code, tmp_path):
    """Run code as a script in a fresh interpreter (spawned children import
    its __main__); it must pass and print nothing on stderr."""
    script = tmp_path / "scenario.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.run([sys.executable, str(script)], **CAPTURE,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for word in TRACKER_NOISE:
        assert word not in proc.stderr, proc.stderr
    return proc.stdout


def test_with_block_of_the_inherited_list_in_a_child_does_not_unlink(tmp_path):
    out = run_quietly("""
        import os
        from pyshl import ShareableList
        with ShareableList([1, "two"]) as sl:
            name = sl.shm.name
            pid = os.fork()
            if pid == 0:
                try:
                    with sl:                 # leaving a block in the child...
                        sl[0] = 5
                finally:
                    os._exit(0 if os.path.exists("/dev/shm/" + name) else 1)
            _, status = os.waitpid(pid, 0)
            assert status == 0
            assert os.path.exists("/dev/shm/" + name), "the child unlinked it"
            assert sl.tolist() == [5, "two"]
        assert not os.path.exists("/dev/shm/" + name), "the creator did not unlink it"
        print(name)
    """, tmp_path)
    assert not segment_exists(out.strip())


def test_child_leaving_the_parents_block_does_not_unlink(tmp_path):
    # The scenario: fork inside the block; the child falls out of the
    # parent's `with` while the parent still works in it.
    out = run_quietly("""
        import os
        from pyshl import ShareableList
        with ShareableList([1]) as sl:
            name = sl.shm.name
            pid = os.fork()
            if pid:
                _, status = os.waitpid(pid, 0)
                assert os.path.exists("/dev/shm/" + name), "the child unlinked it"
                sl[0] = 2
        if pid == 0:
            os._exit(0)
        assert not os.path.exists("/dev/shm/" + name)
        print("ok")
    """, tmp_path)
    assert out.strip() == "ok"


def test_child_close_never_unlinks(tmp_path):
    run_quietly("""
        import os
        from pyshl import ShareableList
        sl = ShareableList([1, 2])
        pid = os.fork()
        if pid == 0:
            sl.close()
            del sl
            os._exit(0)
        os.waitpid(pid, 0)
        assert sl.tolist() == [1, 2] and os.path.exists("/dev/shm/" + sl.shm.name)
        sl.close()
        sl.unlink()
    """, tmp_path)


def test_unlink_after_child_unlinked_raises_and_leaves_tracker_consistent(tmp_path):
    run_quietly("""
        import os
        from pyshl import ShareableList
        sl = ShareableList([1, 2])
        pid = os.fork()
        if pid == 0:
            sl.unlink()                       # explicit: the child may do it
            os._exit(0)
        os.waitpid(pid, 0)
        assert not os.path.exists("/dev/shm/" + sl.shm.name)
        try:
            sl.unlink()
        except FileNotFoundError:
            pass
        else:
            raise AssertionError("a second unlink did not raise FileNotFoundError")
        sl.close()
    """, tmp_path)


def test_child_unlink_leaves_no_leak_warning_in_the_creator(tmp_path):
    # The creator never unlinks: at exit its tracker must not warn about (or
    # try to unlink) a name the child already removed.
    run_quietly("""
        import os
        from pyshl import ShareableList
        sl = ShareableList([1, 2])
        pid = os.fork()
        if pid == 0:
            sl.unlink()
            os._exit(0)
        os.waitpid(pid, 0)
        sl.close()
    """, tmp_path)


def test_attached_unlink_then_creator_unlink_is_quiet(tmp_path):
    # A process that only attached unlinks; the creator's own unlink then
    # raises FileNotFoundError and its tracker stays quiet.
    run_quietly("""
        import os, subprocess, sys
        from pyshl import ShareableList
        sl = ShareableList([1])
        subprocess.run([sys.executable, "-c",
                        "from pyshl import ShareableList; "
                        "s = ShareableList(name=%r); s.unlink(); s.close()" % sl.shm.name],
                       check=True)
        try:
            sl.unlink()
        except FileNotFoundError:
            pass
        else:
            raise AssertionError("no FileNotFoundError")
        sl.close()
    """, tmp_path)


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_children_leaving_with_blocks(method, tmp_path):
    # With fork the child holds the very object the parent created; with
    # forkserver and spawn it gets a pickled copy that attaches by name.
    run_quietly("""
        import multiprocessing, os
        from pyshl import ShareableList

        def work(sl):
            with sl:
                sl.fetch_add(0, 1)

        if __name__ == "__main__":
            ctx = multiprocessing.get_context(%r)
            with ShareableList([0]) as sl:
                procs = [ctx.Process(target=work, args=(sl,)) for _ in range(3)]
                for p in procs:
                    p.start()
                for p in procs:
                    p.join(60)
                    assert p.exitcode == 0
                assert os.path.exists("/dev/shm/" + sl.shm.name)
                assert sl[0] == 3
            assert not os.path.exists("/dev/shm/" + sl.shm.name)
    """ % method, tmp_path)
