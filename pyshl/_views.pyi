"""Type stubs for pyshl._views: arrays over pyshl segments that pickle by reference."""

from types import TracebackType
from typing import Any, Optional, Type, TypeVar

import numpy as np

_S = TypeVar("_S", bound="SharedArray")

class SharedArray(np.ndarray[Any, np.dtype[Any]]):
    @property
    def name(self) -> Optional[str]: ...
    def unlink(self) -> None: ...
    def __enter__(self: _S) -> _S: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None: ...
