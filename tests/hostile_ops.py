"""Random and mutated segments, and every API run on them: the hostile-segment fuzz.

Used by tests/test_hostile.py (in a subprocess, so that a crash is a failure)
and by tests/fuzz_atheris.py (coverage-guided).  Run directly:

    python tests/hostile_ops.py SEED CASES
"""
import random
import struct
import sys

import numpy as np

from pyshl import ShareableList, SharedMemory


def valid_segment(rng):
    """The bytes of a valid list: mixed items, or one numeric type (for views)."""
    items = []
    kinds = rng.choice([range(6), [0], [1], [2]])
    for _ in range(rng.randrange(0, 12)):
        kind = rng.choice(kinds)
        items.append([rng.randrange(-2**63, 2**63), rng.random(), rng.random() < .5, None,
                      "s" * rng.randrange(20), b"b" * rng.randrange(20)][kind])
    sl = ShareableList(items, track=False)
    data = bytes(sl.shm.buf)
    sl.close()
    sl.unlink()
    return bytearray(data)


def mutate(rng, data):
    # Mostly small mutations, which keep a plausible header and reach deeper.
    choice = rng.choice([0, 0, 0, 0, 1, 1, 2, 3])
    if choice == 0 and data:              # flip bits
        for _ in range(rng.randrange(1, 8)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif choice == 1 and len(data) > 16:  # overwrite a word with an edge value
        i = rng.randrange(0, len(data) - 8)
        data[i:i + 8] = struct.pack("q", rng.choice([-1, 0, 7, 2**31, 2**62, -2**63]))
    elif choice == 2:                     # truncate
        del data[rng.randrange(len(data) + 1):]
    else:                                 # random bytes
        data = bytearray(rng.getrandbits(8) for _ in range(rng.randrange(1, 200)))
    return data


def exercise(data, rng):
    """Map `data` as a segment and run every API on it; return whether it attached.

    Clear exceptions are fine; only a crash (or another exception) fails.
    """
    shm = SharedMemory(create=True, size=max(len(data), 1), track=False)
    shm.buf[:len(data)] = data
    try:
        try:
            sl = ShareableList(name=shm.name)
        except ValueError:
            return False
        n = len(sl)
        ops = [len, list, repr, lambda s: s.tolist(), lambda s: s.format,
               lambda s: s.count(1), lambda s: s.count(1.0), lambda s: s.count("s"),
               lambda s: s.count(b""), lambda s: None in s, lambda s: s.index(True),
               lambda s: s.count(object()), lambda s: s._type_counts(), lambda s: s[::-1],
               lambda s: s[1::2], lambda s: s.view().sum(), lambda s: np.asarray(s).sum(),
               lambda s: s.view(dtype=np.float64).sum(), lambda s: s.view(dtype=bool).sum(),
               lambda s: s.add_at(np.arange(n), 1), lambda s: s.add_at([0, -1], 0.5)]
        a, b = sorted(rng.randrange(-2, n + 2) for _ in range(2))
        ops.append(lambda s: s.view(a, b).sum())
        for k in range(-1, n):
            ops += [lambda s, k=k: s[k], lambda s, k=k: s._get_packing_format(k),
                    lambda s, k=k: s.fetch_add(k, 1), lambda s, k=k: s.fetch_add(k, 0.5),
                    lambda s, k=k: s.load(k), lambda s, k=k: s.compare_exchange(k, 0, 1),
                    lambda s, k=k: s.compare_exchange(k, 0.0, 1.0), lambda s, k=k: s.store(k, 3)]
            ops += [lambda s, k=k, v=v: s.__setitem__(k, v) for v in (7, 2.5, None, "ab", b"")]
        ops.append(lambda s: s.__setitem__(slice(None), [1] * n))
        for op in ops:
            try:
                op(sl)
            except (ValueError, IndexError, TypeError, OverflowError):
                pass
        sl.close()
        return True
    finally:
        shm.close()
        shm.unlink()


def main(seed, cases):
    rng = random.Random(seed)
    attached = sum(exercise(mutate(rng, valid_segment(rng)), rng) for _ in range(cases))
    print("ok", cases)
    print("attached", attached, file=sys.stderr)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
