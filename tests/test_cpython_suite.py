"""CPython's own ShareableList tests, retargeted at pyshl.

The running interpreter's `test._test_multiprocessing` (shipped with CPython)
is imported in a child process, its `shared_memory` module and
`multiprocessing.managers.SharedMemoryManager` are swapped for pyshl's, and
every test of `_TestSharedMemory` about ShareableList or the manager runs.
"""
import sys

import pytest

from helpers import run_python

RETARGETED = """
import multiprocessing.managers
import sys
import types
import unittest

import pyshl

try:
    from test import _test_multiprocessing as cpython_tests
except ImportError as exc:
    print("SKIP: this Python ships no test package (%s)" % exc)
    sys.exit(0)

cpython_tests.shared_memory = types.SimpleNamespace(
    ShareableList=pyshl.ShareableList, SharedMemory=pyshl.SharedMemory)
multiprocessing.managers.SharedMemoryManager = pyshl.SharedMemoryManager


class Retargeted(cpython_tests._TestSharedMemory, unittest.TestCase):
    TYPE = "processes"


names = sorted(name for name in dir(Retargeted) if name.startswith("test_shared_memory")
               and ("ShareableList" in name or "SharedMemoryManager" in name))
print("RUNNING", " ".join(names))
result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(
    unittest.TestSuite(Retargeted(name) for name in names))
sys.exit(0 if result.wasSuccessful() and result.testsRun == len(names) else 1)
"""


@pytest.mark.skipif(sys.version_info < (3, 9),
                    reason="before 3.9 CPython's tests check its older segment layout")
def test_cpython_shareable_list_tests_pass_on_pyshl():
    proc = run_python(RETARGETED, check=False, timeout=300)
    if proc.stdout.startswith("SKIP:"):
        pytest.skip(proc.stdout.strip())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = proc.stdout.split("\n", 1)[0].split()[1:]
    assert "test_shared_memory_ShareableList_basics" in ran and len(ran) >= 4
    assert "resource_tracker" not in proc.stderr and "leaked" not in proc.stderr
