"""Helpers shared by the tests (imported explicitly: `from helpers import ...`)."""
import multiprocessing
import os
import stat
import subprocess
import sys
import textwrap
import time

import pytest

# The standard ShareableList shares pyshl's layout from Python 3.9 on; 3.7
# has no shared_memory module and 3.8's list uses an older layout.
if sys.version_info >= (3, 9):
    from multiprocessing import shared_memory as std_shared_memory
else:
    std_shared_memory = None
needs_stdlib_list = pytest.mark.skipif(
    std_shared_memory is None,
    reason="this Python's standard library has no ShareableList of the 3.9+ layout")

SHM_DIR = "/dev/shm"

# subprocess.run(..., **CAPTURE): capture_output=True, text=True, as Python 3.6 spells it.
CAPTURE = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)


def segment_names():
    return {n for n in os.listdir(SHM_DIR) if n.startswith("psm_")}


def assert_no_new_segments(before, grace=1.0):
    """No segment that the tests made appeared since the `before` snapshot
    and stayed.

    Other programs on the machine may create segments meanwhile: a new one
    must stay for a whole grace period and be mapped by no process but this
    one to count as ours (the tests' children have exited by then).
    """
    deadline = time.monotonic() + grace
    new = segment_names() - before
    while new and time.monotonic() < deadline:
        time.sleep(0.05)
        new &= segment_names()          # the same segment, there all along
    new = {name for name in new if _is_regular_file(os.path.join(SHM_DIR, name))}
    new -= mapped_by_other_processes(new)
    assert not new, "shared memory segments were left behind: %s" % sorted(new)


def _is_regular_file(path):
    """A segment is one; another program's link, FIFO or folder is not."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def mapped_by_other_processes(names):
    """Those of the segment names that a live process other than this one maps."""
    found = set()
    paths = {os.path.join(SHM_DIR, name): name for name in names}
    if not paths:
        return found
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/maps" % pid) as maps:
                for line in maps:
                    path = line.rstrip("\n").split(None, 5)[-1].replace(" (deleted)", "")
                    if path in paths:
                        found.add(paths[path])
        except OSError:
            continue      # gone meanwhile, or not ours to read
    return found


def segment_exists(name):
    return os.path.exists(os.path.join(SHM_DIR, name.lstrip("/")))


def run_python(code, *, check=True, timeout=120):
    """Run code in a fresh interpreter (a real, separate process)."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          **CAPTURE, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError("child failed (%d):\n%s\n%s"
                             % (proc.returncode, proc.stdout, proc.stderr))
    return proc


def run_processes(method, jobs, timeout=120):
    """Run (target, args) jobs as processes of the `method` start method, all at
    once; every one must exit with 0."""
    ctx = multiprocessing.get_context(method)
    procs = [ctx.Process(target=target, args=args) for target, args in jobs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    assert [p.exitcode for p in procs] == [0] * len(procs)
