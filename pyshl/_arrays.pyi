"""Type stubs for pyshl._arrays: shared arrays by name."""

from typing import Any, Optional, Sequence, Union

import numpy.typing as npt

from pyshl._views import SharedArray

_Shape = Union[int, Sequence[int]]

def empty(
    shape: _Shape, dtype: npt.DTypeLike = float, *, name: Optional[str] = None,
    track: Optional[bool] = None,
) -> SharedArray: ...
def zeros(
    shape: _Shape, dtype: npt.DTypeLike = float, *, name: Optional[str] = None,
    track: Optional[bool] = None,
) -> SharedArray: ...
def full(
    shape: _Shape, fill_value: Any, dtype: Optional[npt.DTypeLike] = None, *,
    name: Optional[str] = None, track: Optional[bool] = None,
) -> SharedArray: ...
def array(
    obj: npt.ArrayLike, dtype: Optional[npt.DTypeLike] = None, *, name: Optional[str] = None,
    track: Optional[bool] = None,
) -> SharedArray: ...
def attach(name: str, *, readonly: bool = False) -> SharedArray: ...
