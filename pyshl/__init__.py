"""pyshl: a fast, binary-compatible drop-in for the standard ShareableList.

    from pyshl import ShareableList   # instead of multiprocessing.shared_memory
"""

try:
    from pyshl._codec import Cell, Lock, LockRecoveredWarning, ShareableList, UnsupportedTypeError
except ModuleNotFoundError as exc:     # run from an unbuilt source tree?
    if exc.name not in ("pyshl._codec", "pyshl._mapping"):
        raise
    import os as _os
    raise ImportError(
        "pyshl's compiled core is not built in %s: install pyshl (pip install .) and run it "
        "from outside the source tree, or build it in place (pip install -e .)"
        % _os.path.dirname(_os.path.abspath(__file__)), name="pyshl") from None
from pyshl._manager import SharedMemoryManager
from pyshl._shm import SharedMemory

__all__ = ["Cell", "Lock", "LockRecoveredWarning", "ShareableList", "SharedMemory",
           "SharedMemoryManager", "UnsupportedTypeError"]
__version__ = "0.1.0"
