"""Random and mutated segments, and every API run on them: the hostile-segment fuzz.

Used by tests/test_hostile.py (in a subprocess, so that a crash is a failure)
and by tests/fuzz_atheris.py (coverage-guided).  Run directly:

    python tests/hostile_ops.py SEED CASES
"""
import io
import pickle
import random
import struct
import sys

import numpy as np

import pyshl
from pyshl import ShareableList, SharedMemory

_ARRAY_DTYPES = ["i1", "u2", "i4", "u8", "f4", "f8", "c8", "?", "S3", "U2", ">i8", "M8[s]",
                 [("a", "i4"), ("b", "f8", (2,))]]


def valid_segment(rng):
    """The bytes of a valid list (mixed items, or one numeric type, for
    views), or a third of the time the .npy image of a shared array."""
    if rng.random() < 1 / 3:
        shape = tuple(rng.randrange(0, 5) for _ in range(rng.randrange(0, 4)))
        array = np.zeros(shape, rng.choice(_ARRAY_DTYPES))
        image = io.BytesIO()
        np.save(image, array)
        return bytearray(image.getvalue())
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
    choice = rng.choice([0, 0, 0, 0, 1, 1, 2, 3, 4, 4])
    if choice == 4 and data[:6] == b"\x93NUMPY":   # an array's header: edit its text
        end = data.find(b"\n")
        text = bytearray(data[10:end if end > 0 else len(data)])
        for _ in range(rng.randrange(1, 4)):
            if text:
                i = rng.randrange(len(text))
                text[i:i + rng.randrange(0, 4)] = rng.choice(
                    [b"(", b")", b"[", b"'", b"9999999999", b"-1", b",", b"O", b"<f", b"", b"0"])
        data = data[:10] + text + data[10 + len(text):]
    elif choice == 0 and data:            # flip bits
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
        exercise_array(shm.name)
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


def exercise_array(name):
    """Attach segment `name` as a shared array and use it, if it reads as one."""
    try:
        a = pyshl.attach(name)
    except ValueError:
        return False
    ops = [lambda a: a.tolist(), lambda a: repr(a), lambda a: pickle.loads(pickle.dumps(a)),
           lambda a: a.sum(), lambda a: a.reshape(-1)[::-1].copy(),
           lambda a: pyshl.add_at(a, np.zeros(3, np.int64), 1),
           lambda a: pyshl.add_at(a, (np.arange(2),) * a.ndim, 1),
           lambda a: pyshl.fetch_add(a, (0,) * a.ndim, 1),
           lambda a: pyshl.compare_exchange(a, (-1,) * a.ndim, 0, 1)]
    # NumPy itself raises SystemError reading a str ('U') element that is
    # not a code point: what another process wrote there is untrusted too.
    tolerated = (ValueError, IndexError, TypeError, OverflowError) + \
        ((SystemError,) if "U" in a.dtype.str or a.dtype.fields else ())
    for op in ops:
        try:
            op(a)
        except tolerated:
            pass
    return True


def main(seed, cases):
    rng = random.Random(seed)
    attached = sum(exercise(mutate(rng, valid_segment(rng)), rng) for _ in range(cases))
    print("ok", cases)
    print("attached", attached, file=sys.stderr)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
