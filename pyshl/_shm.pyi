"""Type stubs for pyshl's shared memory segments."""

import sys
from typing import Optional

if sys.version_info >= (3, 8):
    from multiprocessing.shared_memory import SharedMemory as _SharedMemoryBase
else:
    class _SharedMemoryBase:
        @property
        def buf(self) -> memoryview: ...
        @property
        def name(self) -> str: ...
        @property
        def size(self) -> int: ...

class SharedMemory(_SharedMemoryBase):
    def __init__(
        self,
        name: Optional[str] = None,
        create: bool = False,
        size: int = 0,
        *,
        track: Optional[bool] = None,
        readonly: bool = False,
    ) -> None: ...
    @property
    def readonly(self) -> bool: ...
    def close(self) -> None: ...
    def unlink(self) -> None: ...

def open_segment(name: str, flags: int) -> int: ...
def unlink_segment(name: str) -> None: ...
