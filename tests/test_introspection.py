"""help() and inspect.signature() show the real signature of every public callable."""
import inspect
import pydoc
import sys

import pytest

import pyshl

PUBLIC = [getattr(pyshl, name) for name in pyshl.__all__]
CALLABLES = [obj for obj in PUBLIC if callable(obj)]
CLASSES = [obj for obj in PUBLIC if inspect.isclass(obj)]
# The public methods that pyshl defines (not those a class inherits from NumPy,
# the standard library or object).
METHODS = [(cls, name) for cls in CLASSES for name, value in vars(cls).items()
           if (not name.startswith("_") or name in ("__enter__", "__exit__"))
           and callable(value)]


def test_every_public_name_is_covered():
    assert len(CALLABLES) == len(pyshl.__all__)
    assert len(METHODS) >= 30


@pytest.mark.parametrize("obj", CALLABLES, ids=lambda obj: obj.__name__)
def test_signature_of_every_public_callable(obj):
    if obj is pyshl.SharedArray:
        # An ndarray subclass: its signature is NumPy's, which NumPy 1.x lacks.
        import numpy as np
        try:
            inspect.signature(np.ndarray)
        except ValueError:
            pytest.skip("this NumPy's ndarray has no signature to inherit")
    signature = inspect.signature(obj)
    assert "self" not in signature.parameters
    if obj.__name__ not in ("LockRecoveredWarning", "UnsupportedTypeError"):
        assert not any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()), \
            (obj, signature)


@pytest.mark.parametrize("cls, name", METHODS, ids=lambda x: getattr(x, "__name__", x))
def test_signature_of_every_public_method(cls, name):
    signature = inspect.signature(getattr(cls, name))
    assert list(signature.parameters)[0] == "self"


def test_the_lists_arguments_after_the_sequence_are_keyword_only():
    parameters = inspect.signature(pyshl.ShareableList).parameters
    assert list(parameters) == ["sequence", "name", "track", "readonly"]
    assert parameters["sequence"].default is None
    assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
               for name in ("name", "track", "readonly"))


@pytest.mark.parametrize("name, expected", [
    ("ShareableList", "ShareableList(sequence=None, *, name=None, track=None, readonly=False)"),
    ("Cell", "Cell(sl, index)"),
    ("Lock", "Lock(sl, index)"),
    ("attach", "attach(name, *, readonly=False)"),
    ("fetch_add", "fetch_add(a, index, value, /)"),
    ("compare_exchange", "compare_exchange(a, index, expected, desired, /)"),
])
def test_help_shows_the_signature(name, expected):
    if inspect.isclass(getattr(pyshl, name)) and sys.version_info < (3, 7):
        pytest.skip("help() shows the signatures of classes from Python 3.7 on")
    text = pydoc.render_doc(getattr(pyshl, name), renderer=pydoc.plaintext)
    assert expected in text


@pytest.mark.parametrize("method, expected", [
    (pyshl.ShareableList.fetch_add, "(self, /, index, delta)"),
    (pyshl.ShareableList.view, "(self, /, start=None, stop=None, *, dtype=None)"),
    (pyshl.ShareableList.add_at, "(self, /, indices, deltas)"),
    (pyshl.Lock.acquire, "(self, /, blocking=True, timeout=-1)"),
])
def test_compiled_methods_have_their_signatures(method, expected):
    assert str(inspect.signature(method)) == expected


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_the_docstring_does_not_repeat_the_signature_marker(cls):
    # The class signature is written at the head of the docstring, in the
    # form CPython strips from __doc__ (name(...), then a line "--").
    doc = inspect.getdoc(cls)
    assert doc and not doc.startswith(cls.__name__ + "(") and "\n--\n" not in doc
