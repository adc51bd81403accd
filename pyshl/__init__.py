"""pyshl: a fast, binary-compatible drop-in for the standard ShareableList,
and shared NumPy arrays by name, with atomic updates across processes.

    from pyshl import ShareableList   # instead of multiprocessing.shared_memory
"""

import sys as _sys
import typing as _typing

try:
    from pyshl._codec import (
        Cell,
        Lock,
        LockRecoveredWarning,
        ShareableList,
        UnsupportedTypeError,
        add_at,
        compare_exchange,
        fetch_add,
    )
except ModuleNotFoundError as exc:     # run from an unbuilt source tree?
    if exc.name not in ("pyshl._codec", "pyshl._mapping"):
        raise
    import os as _os
    raise ImportError(
        "pyshl's compiled core is not built in %s: install pyshl (pip install .) and run it "
        "from outside the source tree, or build it in place (pip install -e .)"
        % _os.path.dirname(_os.path.abspath(__file__)), name="pyshl") from None
from pyshl._manager import SharedMemoryManager
from pyshl._numpy_hook import when_numpy_imported as _when_numpy_imported
from pyshl._shm import SharedMemory

__all__ = ["Cell", "Lock", "LockRecoveredWarning", "ShareableList", "SharedArray",
           "SharedMemory", "SharedMemoryManager", "UnsupportedTypeError", "add_at", "array",
           "attach", "compare_exchange", "empty", "fetch_add", "full", "zeros"]
__version__ = "0.1.0"

# Shared arrays need NumPy, which takes longer to import than all of pyshl:
# their names are imported on first use (Python 3.7+), and the reducer that
# makes arrays over pyshl segments travel by reference is registered now or
# the moment NumPy is imported.
_NUMPY_NAMES = {"SharedArray": "pyshl._views", "array": "pyshl._arrays",
                "attach": "pyshl._arrays", "empty": "pyshl._arrays", "full": "pyshl._arrays",
                "zeros": "pyshl._arrays"}
_when_numpy_imported()

if _sys.version_info < (3, 7) or _typing.TYPE_CHECKING:     # no module __getattr__
    from pyshl._arrays import array, attach, empty, full, zeros
    from pyshl._views import SharedArray
else:
    def __getattr__(name: str) -> object:
        module = _NUMPY_NAMES.get(name)
        if module is None:
            raise AttributeError("module 'pyshl' has no attribute %r" % name)
        import importlib
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> "_typing.List[str]":
        return sorted(set(globals()) | set(_NUMPY_NAMES))
