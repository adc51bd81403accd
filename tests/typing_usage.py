"""Type-checked by tests/test_typing.py with mypy --strict: typical pyshl use."""
from __future__ import annotations

import numpy as np

from pyshl import Cell, ShareableList, SharedMemory, SharedMemoryManager


def use_lists() -> int:
    numbers: ShareableList[int] = ShareableList([1, 2, 3])
    first: int = numbers[0]
    numbers[1] = 5
    head: list[int] = numbers[0:2]
    numbers[0:2] = [7, 8]
    previous: int = numbers.fetch_add(0, 1)
    swapped: bool = numbers.compare_exchange(0, 8, 9)
    numbers.add_at(np.array([0, 1]), 1)
    counter: Cell[int] = numbers.cell(0)
    with numbers.lock(1) as lock:
        swapped = swapped and lock.locked()
    previous += counter.fetch_add(1) + counter.load()
    total = int(numbers.view().sum()) + int(np.asarray(numbers).sum())
    for value in numbers:
        total += value
    total += len(numbers) + numbers.count(9) + numbers.index(9) + first + previous
    numbers.close()
    numbers.unlink()
    with ShareableList(["a", "b"]) as words:
        text: str = words[0]
        total += len(text) + len(words.tolist()) + len(head) + int(swapped)
    return total


def use_shared_memory() -> int:
    shm = SharedMemory(create=True, size=16, track=None)
    size: int = shm.size
    shm.close()
    shm.unlink()
    with SharedMemoryManager() as smm:
        managed = smm.ShareableList([1.5, 2.5])
        size += int(managed[0])
    return size


def use_shared_arrays() -> float:
    import pyshl

    with pyshl.zeros((4, 3), np.int32, name=None, track=None) as hist:
        pyshl.add_at(hist, np.array([0, 1, 1]), 1)
        pyshl.add_at(hist, (np.array([0]), np.array([2])), np.array([5]))
        old = pyshl.fetch_add(hist, (0, 0), 1)
        done: bool = pyshl.compare_exchange(hist, (0, 0), 2, 3)
        same: pyshl.SharedArray = pyshl.attach(hist.name or "", readonly=True)
        total = float(same.sum()) + float(old) + int(done)
    for made in (pyshl.empty(3), pyshl.full(2, 1.5), pyshl.array([1, 2])):
        total += float(made.sum())
        made.unlink()
    return total
