"""The package is typed: mypy --strict accepts typical use, and help() documents it."""
import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pyshl
from helpers import CAPTURE

HERE = Path(__file__).resolve().parent
# The package under test, wherever it is installed: its stubs are the ones shipped.
PACKAGE = Path(pyshl.__file__).resolve().parent


@pytest.mark.skipif(sys.version_info < (3, 7),
                    reason="NumPy for Python 3.6 (1.19) has no numpy.typing")
def test_mypy_strict_accepts_typical_use(tmp_path):
    pytest.importorskip("mypy")
    env = {"PATH": "/usr/bin:/bin"}
    if "site-packages" not in PACKAGE.parts:
        env["MYPYPATH"] = str(PACKAGE.parent)   # an in-place build: mypy skips import hooks
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         str(HERE / "typing_usage.py")],
        **CAPTURE, timeout=600, cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(sys.version_info < (3, 7), reason="__class_getitem__ is Python 3.7+")
def test_shareable_list_is_generic_at_run_time():
    alias = pyshl.ShareableList[int]
    assert alias.__origin__ is pyshl.ShareableList and alias.__args__ == (int,)


def test_the_package_ships_its_types():
    package = Path(pyshl.__file__).parent
    assert (package / "py.typed").exists() and (package / "_codec.pyi").exists()


PUBLIC = [pyshl, pyshl.ShareableList, pyshl.SharedMemory, pyshl.SharedMemoryManager,
          pyshl.UnsupportedTypeError, pyshl.Cell, pyshl.Lock, pyshl.LockRecoveredWarning]


@pytest.mark.parametrize("obj", PUBLIC, ids=lambda o: getattr(o, "__name__", repr(o)))
def test_every_public_name_has_a_docstring(obj):
    assert inspect.getdoc(obj)
    if inspect.isclass(obj) and obj is not pyshl.UnsupportedTypeError:
        for name, member in vars(obj).items():
            if not name.startswith("_") and callable(member) or isinstance(member, property):
                assert inspect.getdoc(member), "%s.%s has no docstring" % (obj.__name__, name)


# -- the stubs match the runtime ------------------------------------------------

STUB_CLASSES = [("_codec.pyi", pyshl.ShareableList), ("_shm.pyi", pyshl.SharedMemory),
                ("_manager.pyi", pyshl.SharedMemoryManager),
                ("_codec.pyi", pyshl.UnsupportedTypeError), ("_codec.pyi", pyshl.Cell),
                ("_codec.pyi", pyshl.Lock), ("_codec.pyi", pyshl.LockRecoveredWarning)]


def _stub_members(stub, class_name):
    """{member name: parameter names} of a class in a .pyi (all its definitions)."""
    members = {}
    for node in ast.walk(ast.parse((PACKAGE / stub).read_text())):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    a = item.args
                    positional = getattr(a, "posonlyargs", []) + a.args   # (3.8+ has /)
                    members[item.name] = [p.arg for p in positional + a.kwonlyargs]
    return members


def _runtime_parameters(function):
    """Parameter names of a Python function, or of a Cython one from the
    signature it embeds in its docstring."""
    try:
        return list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        match = re.match(r"[\w.]+\((.*?)\)", function.__doc__ or "")
        assert match, "no signature for %r" % function
        names = [p.split("=")[0].strip(" *") for p in match.group(1).split(",")]
        return [name for name in names if name and name != "/"]


@pytest.mark.parametrize("stub, cls", STUB_CLASSES, ids=lambda x: getattr(x, "__name__", x))
def test_stubs_list_exactly_the_runtime_public_names(stub, cls):
    declared = _stub_members(stub, cls.__name__)
    runtime = {name for name in vars(cls) if not name.startswith("_")}
    assert {name for name in declared if not name.startswith("_")} == runtime
    for name, parameters in declared.items():
        member = inspect.getattr_static(cls, name)
        if isinstance(member, (property, type(pyshl.ShareableList.shm))):
            continue
        function = getattr(member, "__func__", member)
        if name == "__init__" and isinstance(function, type(object.__init__)):
            # A C type's __init__ is a slot wrapper: the class's signature is
            # the head of its docstring (what inspect.signature reads).
            runtime_parameters = ["self"] + list(inspect.signature(cls).parameters)
            assert parameters == runtime_parameters, name
        elif isinstance(function, type(object.__init__)):
            continue    # another slot wrapper: CPython fixes its parameter names
        elif name in vars(cls) and callable(function):
            runtime_parameters = _runtime_parameters(function)
            if isinstance(member, (classmethod, type(dict.__dict__["fromkeys"]))):
                # A Python or a C class method: its first parameter is the class.
                runtime_parameters = ["cls"] + runtime_parameters[1:]
            assert parameters == runtime_parameters, name


def test_stub_modules_declare_the_package_names():
    init = ast.parse((PACKAGE / "__init__.py").read_text())
    exported = next(node.value for node in ast.walk(init) if isinstance(node, ast.Assign)
                    and node.targets[0].id == "__all__")
    assert sorted(ast.literal_eval(exported)) == sorted(pyshl.__all__)
    for name in pyshl.__all__:
        module = getattr(pyshl, name).__module__.replace("pyshl.", "")
        assert (PACKAGE / (module + ".pyi")).exists(), name
