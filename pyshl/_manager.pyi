"""Type stubs for pyshl's SharedMemoryManager."""

from multiprocessing import managers
from typing import Iterable, Optional, TypeVar, Union

from pyshl._codec import SharedMemory, ShareableList

_T = TypeVar("_T", bound=Union[int, float, bool, str, bytes, None])

class SharedMemoryManager(managers.SharedMemoryManager):
    def SharedMemory(self, size: int) -> SharedMemory: ...
    def ShareableList(  # type: ignore[override]
        self, sequence: Optional[Iterable[_T]]
    ) -> ShareableList[_T]: ...
