"""Type stubs for pyshl's SharedMemoryManager."""

import sys
from typing import Iterable, Optional, TypeVar, Union

from pyshl._codec import ShareableList
from pyshl._shm import SharedMemory

_T = TypeVar("_T", bound=Union[int, float, bool, str, bytes, None])

if sys.version_info >= (3, 8):
    from multiprocessing.managers import SharedMemoryManager as _StdManager

    class SharedMemoryManager(_StdManager):
        def SharedMemory(self, size: int) -> SharedMemory: ...
        def ShareableList(  # type: ignore[override, unused-ignore]
            self, sequence: Optional[Iterable[_T]]
        ) -> ShareableList[_T]: ...

else:
    from multiprocessing.managers import BaseManager

    class SharedMemoryManager(BaseManager):
        def SharedMemory(self, size: int) -> SharedMemory: ...
        def ShareableList(self, sequence: Optional[Iterable[_T]]) -> ShareableList[_T]: ...
