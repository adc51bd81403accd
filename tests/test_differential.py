"""A Hypothesis state machine drives pyshl and the standard library side by side.

Every step does the same thing to a pyshl list and a standard-library list
built from the same values, and asserts identical results and byte-identical
segments; where pyshl deliberately differs (the documented fixes), it asserts
pyshl's documented behaviour instead and leaves the stdlib out.

Bounded for CI; PYSHL_HYPOTHESIS=long runs far more steps.
"""
import math
import os
import pickle
import sys

import pytest

if sys.version_info < (3, 9):
    pytest.skip("this Python's standard library has no ShareableList of the 3.9+ layout",
                allow_module_level=True)
from multiprocessing.shared_memory import ShareableList as StdList  # noqa: E402

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pyshl import ShareableList

LONG = os.environ.get("PYSHL_HYPOTHESIS") == "long"

ascii_text = st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=33)
edge_ints = st.sampled_from([0, 1, -1, 2**63 - 1, -2**63, 2**31, -2**31 - 1, 255, 256])
edge_floats = st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 5e-324,
                               1.7976931348623157e308, 2.0**63, -2.0**63, 2.0**64])
capacity_text = st.integers(0, 33).map(lambda n: "x" * n)      # around the 8-byte boundaries
nul_text = st.sampled_from(["\0", "a\0", "\0b", "a\0\0", "nul\0 in\0middle"])
initial_values = st.one_of(
    st.integers(-2**63, 2**63 - 1), edge_ints, st.floats(), edge_floats, st.booleans(),
    st.none(), ascii_text, capacity_text, nul_text, st.binary(max_size=33),
)
# Written values may be non-ASCII: the stdlib sizes writes in UTF-8 bytes too.
written_values = st.one_of(initial_values, st.text(max_size=12),
                           st.sampled_from(["é" * 4, "€" * 3, "🐍" * 2]))
# Probes for count/index/in may be any value: big ints equal some floats exactly.
probes = st.one_of(written_values, st.sampled_from([2**63, 2**64, -2**70, 10**400, 2.0**64]),
                   st.integers(), st.floats())
out_of_range_ints = st.one_of(st.integers(2**63, 2**70), st.integers(-2**70, -2**63 - 1))


def same(a, b):
    """Equal values of the same type (NaN equal to NaN, -0.0 distinct from 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (
            a == b and math.copysign(1, a) == math.copysign(1, b))
    return a == b


def outcome(fn):
    try:
        return ("ok", fn())
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        return ("error", type(exc))


class SideBySide(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.ours = None
        self.theirs = None

    @initialize(values=st.lists(initial_values, max_size=12))
    def construct(self, values):
        self.ours = ShareableList(values)
        self.theirs = StdList(values)
        self.values = list(values)

    def teardown(self):
        if self.ours is not None:
            self.ours.close()
            self.ours.unlink()
            self.theirs.shm.close()
            self.theirs.shm.unlink()

    @invariant()
    def segments_are_identical(self):
        if self.ours is not None:
            assert bytes(self.ours.shm.buf) == bytes(self.theirs.shm.buf)
            assert self.ours.format == self.theirs.format

    @precondition(lambda self: len(self.values))
    @rule(data=st.data())
    def get(self, data):
        k = data.draw(st.integers(-len(self.values), len(self.values) - 1))
        assert same(self.ours[k], self.theirs[k])
        assert self.ours._get_packing_format(k) == self.theirs._get_packing_format(k)

    @rule(k=st.integers(-40, 40))
    def get_out_of_range_raises(self, k):
        # Fix 2: the stdlib reads metadata for k < -n; pyshl raises.
        if not -len(self.values) <= k < len(self.values):
            before = bytes(self.ours.shm.buf)
            for op in (lambda: self.ours[k], lambda: self.ours.__setitem__(k, 0)):
                assert outcome(op) == ("error", IndexError)
            assert bytes(self.ours.shm.buf) == before

    @precondition(lambda self: len(self.values))
    @rule(data=st.data(), value=written_values)
    def set(self, data, value):
        k = data.draw(st.integers(-len(self.values), len(self.values) - 1))
        ours = outcome(lambda: self.ours.__setitem__(k, value))
        theirs = outcome(lambda: self.theirs.__setitem__(k, value))
        assert ours[0] == theirs[0], (ours, theirs)
        if ours[0] == "error":
            assert issubclass(ours[1], theirs[1])

    @precondition(lambda self: len(self.values))
    @rule(data=st.data(), value=st.one_of(out_of_range_ints, st.just([1]), st.just(1j)))
    def failed_set_changes_nothing(self, data, value):
        # Fixes 3 and 6: the stdlib corrupts the slot on int overflow; pyshl
        # raises and leaves it, its format and its code exactly as they were.
        k = data.draw(st.integers(0, len(self.values) - 1))
        before = bytes(self.ours.shm.buf)
        assert outcome(lambda: self.ours.__setitem__(k, value))[0] == "error"
        assert bytes(self.ours.shm.buf) == before

    @rule(probe=probes)
    def scans(self, probe):
        assert self.ours.count(probe) == self.theirs.count(probe)
        assert outcome(lambda: self.ours.index(probe)) == outcome(lambda: self.theirs.index(probe))
        assert (probe in self.ours) == (probe in list(self.theirs))

    @rule()
    def pickle_attach(self):
        again = pickle.loads(pickle.dumps(self.ours))
        try:
            assert all(same(a, b) for a, b in zip(again.tolist(), list(self.theirs)))
            assert len(again) == len(self.theirs)
        finally:
            again.close()
        theirs_again = StdList(name=self.theirs.shm.name)
        try:
            assert all(same(a, b) for a, b in zip(theirs_again, self.ours.tolist()))
        finally:
            theirs_again.shm.close()


SideBySide.TestCase.settings = settings(
    max_examples=1000 if LONG else 60, stateful_step_count=50 if LONG else 25, deadline=None)
TestSideBySide = SideBySide.TestCase
