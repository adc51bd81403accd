"""pyshl: a fast, binary-compatible drop-in for the standard ShareableList.

    from pyshl import ShareableList   # instead of multiprocessing.shared_memory
"""

from pyshl._codec import ShareableList, UnsupportedTypeError
from pyshl._manager import SharedMemoryManager
from pyshl._shm import SharedMemory

__all__ = ["ShareableList", "SharedMemory", "SharedMemoryManager", "UnsupportedTypeError"]
__version__ = "0.1.0"
