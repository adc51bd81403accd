"""Coverage-guided fuzzing of hostile segments with atheris (libFuzzer).

Every input is a segment's bytes; it is mapped and run through every API (see
hostile_ops.exercise).  An exception other than the clear ones it expects, or a
crash, is a finding.  To get coverage from the Cython core, build it with
clang's instrumentation and preload atheris's ASan + libFuzzer runtime:

    CC=clang LDSHARED="clang -shared" CFLAGS="-fsanitize=address,fuzzer-no-link" \\
        pip install -e .
    LD_PRELOAD="$(python -c 'import atheris; print(atheris.path())')/asan_with_fuzzer.so" \\
    ASAN_OPTIONS=detect_leaks=0 python tests/fuzz_atheris.py CORPUS_DIR -max_total_time=300

CORPUS_DIR starts with valid segments (written there when it is empty).
"""
import os
import random
import sys

import atheris

with atheris.instrument_imports():
    import hostile_ops


def seed_corpus(directory):
    os.makedirs(directory, exist_ok=True)
    if os.listdir(directory):
        return
    rng = random.Random(0)
    for k in range(64):
        with open(os.path.join(directory, "valid-%02d" % k), "wb") as f:
            f.write(hostile_ops.valid_segment(rng))


def test_one_input(data):
    hostile_ops.exercise(bytearray(data), random.Random(len(data)))


def main():
    corpus = [a for a in sys.argv[1:] if not a.startswith("-")]
    if corpus:
        seed_corpus(corpus[0])
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
