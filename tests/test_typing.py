"""The package is typed: mypy --strict accepts typical use, and help() documents it."""
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import pyshl

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_strict_accepts_typical_use():
    pytest.importorskip("mypy")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         str(ROOT / "tests" / "typing_usage.py")],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env={"MYPYPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shareable_list_is_generic_at_run_time():
    alias = pyshl.ShareableList[int]
    assert alias.__origin__ is pyshl.ShareableList and alias.__args__ == (int,)


def test_the_package_ships_its_types():
    package = Path(pyshl.__file__).parent
    assert (package / "py.typed").exists() and (package / "_codec.pyi").exists()


PUBLIC = [pyshl, pyshl.ShareableList, pyshl.SharedMemory, pyshl.SharedMemoryManager,
          pyshl.UnsupportedTypeError]


@pytest.mark.parametrize("obj", PUBLIC, ids=lambda o: getattr(o, "__name__", repr(o)))
def test_every_public_name_has_a_docstring(obj):
    assert inspect.getdoc(obj)
    if inspect.isclass(obj) and obj is not pyshl.UnsupportedTypeError:
        for name, member in vars(obj).items():
            if not name.startswith("_") and callable(member) or isinstance(member, property):
                assert inspect.getdoc(member), "%s.%s has no docstring" % (obj.__name__, name)
