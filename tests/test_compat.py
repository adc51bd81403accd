"""pyshl and the standard library's ShareableList share one segment format."""
import math
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import needs_stdlib_list, run_python
from pyshl import ShareableList

ascii_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=40)
values = st.one_of(
    st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    ascii_text,
    st.binary(max_size=40),
)
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture],
                      deadline=None, max_examples=150)

SAMPLE = [1, -2, 2**63 - 1, -2**63, 0.5, -0.0, math.inf, True, False, None,
          "", "abc", "x" * 8, "y" * 16, b"", b"\x01\x02", b"z" * 9, "tail\0"]


def same_segment(a, b):
    return bytes(a.shm.buf) == bytes(b.shm.buf)


@needs_stdlib_list
@fixture_ok
@given(st.lists(values, max_size=30))
def test_construction_is_byte_identical(make, items):
    ours, std = make(items), make.std(items)
    assert same_segment(ours, std)
    assert ours.format == std.format
    assert list(ours) == list(std)


@fixture_ok
@given(st.lists(values, min_size=1, max_size=12),
       st.lists(st.tuples(st.integers(min_value=0), values), max_size=20))
@needs_stdlib_list
def test_writes_are_byte_identical(make, items, writes):
    ours, std = make(items), make.std(items)
    for position, value in writes:
        position %= len(items)
        outcomes = []
        for sl in (ours, std):
            try:
                sl[position] = value
                outcomes.append(None)
            except ValueError as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1]
        assert same_segment(ours, std)
    assert list(ours) == list(std)
    assert [ours._get_packing_format(i) for i in range(len(items))] == \
        [std._get_packing_format(i) for i in range(len(items))]


@needs_stdlib_list
def test_stdlib_process_reads_and_writes_a_pyshl_list(make):
    sl = make(SAMPLE)
    run_python(f"""
        from math import inf
        from multiprocessing import resource_tracker
        from multiprocessing.shared_memory import ShareableList
        sl = ShareableList(name={sl.shm.name!r})
        # The stdlib registers attached segments and would unlink this one
        # at exit (gh-82300): the usual workaround.
        resource_tracker.unregister(sl.shm._name, "shared_memory")
        assert list(sl) == {SAMPLE!r}[:-1] + ["tail"], list(sl)
        sl[0] = "text"
        sl[4] = 7
        sl[9] = 1.25
        sl[13] = b"bytes"
        sl.shm.close()
    """)
    assert sl[0] == "text" and sl[4] == 7 and sl[9] == 1.25 and sl[13] == b"bytes"
    expected = make.std(SAMPLE)
    expected[0], expected[4], expected[9], expected[13] = "text", 7, 1.25, b"bytes"
    assert same_segment(sl, expected)


@needs_stdlib_list
def test_pyshl_process_reads_and_writes_a_stdlib_list(make):
    std = make.std(SAMPLE)
    run_python(f"""
        from math import inf
        from pyshl import ShareableList
        sl = ShareableList(name={std.shm.name!r})
        assert sl.tolist() == {SAMPLE!r}[:-1] + ["tail"], sl.tolist()
        assert sl.format == {std.format!r}
        sl[1] = "s"
        sl[7] = None
        sl[10] = False
        sl[13] = "longer text"
        sl.close()
    """)
    assert std[1] == "s" and std[7] is None and std[10] is False and std[13] == "longer text"
    expected = make(SAMPLE)
    expected[1], expected[7], expected[10], expected[13] = "s", None, False, "longer text"
    assert same_segment(std, expected)


@needs_stdlib_list
def test_each_class_attaches_in_process(make):
    from multiprocessing.shared_memory import ShareableList as StdList
    ours = make(SAMPLE)
    std_view = StdList(name=ours.shm.name)
    try:
        assert list(std_view) == list(ours)
    finally:
        std_view.shm.close()
    std = make.std(SAMPLE)
    our_view = ShareableList(name=std.shm.name)
    assert list(our_view) == list(std)
    our_view.close()


@needs_stdlib_list
def test_trailing_nuls_are_stripped_as_the_stdlib_does(make):
    items = ["a\0\0", b"b\0", "\0", b"\0\0mid\0dle\0"]
    assert list(make(items)) == list(make.std(items)) == ["a", b"b", "", b"\0\0mid\0dle"]


@needs_stdlib_list
def test_api_facts_match(make):
    ours, std = make([1, "a"]), make.std([1, "a"])
    assert repr(ours) == repr(std).replace(std.shm.name, ours.shm.name)
    assert len(ours) == len(std) == 2
    with pytest.raises(IndexError, match="index out of range"):
        ours[2]
    with pytest.raises(IndexError, match="assignment index out of range"):
        ours[2] = 1
    with pytest.raises(ValueError) as ours_miss:
        ours.index("nope")
    with pytest.raises(ValueError) as std_miss:
        std.index("nope")
    assert str(ours_miss.value) == str(std_miss.value)     # as this Python words it
    with pytest.raises(IndexError, match="Requested position out of range"):
        ours._get_packing_format(5)
    assert ours._get_packing_format(-1) == std._get_packing_format(-1) == "8s"
    assert ShareableList[int].__origin__ is ShareableList
    assert ShareableList[int].__args__ == (int,)


def test_pickle_attaches_by_name_and_is_small(make):
    small, big = make(range(10)), make(range(10**6))
    assert len(pickle.dumps(small)) == len(pickle.dumps(big)) < 200
    again = pickle.loads(pickle.dumps(big))
    try:
        assert again.shm.name == big.shm.name
        assert again[999_999] == 999_999
    finally:
        again.close()


# Python's == semantics, checked against the standard library as the oracle.
SEMANTIC_ITEMS = [0, 1, -1, 2**53 + 1, 2**63 - 1, -2**63, 0.0, -0.0, 1.0, 0.5,
                  float(2**53), 9.2e18, float(2**63), 2.0**64, -2.0**70, math.inf, -math.inf,
                  math.nan, True, False, None, "", "1", "a", b"", b"1", b"a"]
PROBES = SEMANTIC_ITEMS + [2, 2**53, 2**63, -2**63 - 1, 2**64, -2**70, 2**64 + 1,
                           10**400, 1e300, "b", b"b", "\0", 1 + 0j, (), [1], object()]


@needs_stdlib_list
@pytest.mark.parametrize("probe", PROBES, ids=repr)
def test_count_index_contains_follow_python_equality(make, probe):
    ours, std = make(SEMANTIC_ITEMS), make.std(SEMANTIC_ITEMS)
    assert ours.count(probe) == std.count(probe)
    try:
        expected = std.index(probe)
    except ValueError:
        expected = None
        with pytest.raises(ValueError):
            ours.index(probe)
    else:
        assert ours.index(probe) == expected
    assert (probe in ours) == (expected is not None)


@needs_stdlib_list
@fixture_ok
@given(st.lists(values, max_size=30), values)
def test_scans_match_the_stdlib(make, items, probe):
    ours, std = make(items), make.std(items)
    assert ours.count(probe) == std.count(probe)
    assert (probe in ours) == (probe in list(std))


def test_scans_over_long_runs_and_mixed_runs(make):
    # Long homogeneous runs take the vectorised path; make sure hits in every
    # position of a run, and runs broken by other types, are found.
    items = list(range(1000)) + [1.5] * 300 + ["s", 7, None] + list(range(600))
    ours = make(items)
    assert ours.count(7) == items.count(7) == 3
    assert ours.index(999) == 999
    assert ours.index(1.5) == 1000
    assert ours.count(1.5) == 300
    assert ours.index(599) == items.index(599)
    assert ours.count(None) == 1
    assert ours.count(7.0) == 3
    ours[1299] = 7
    assert ours.count(7) == 4
    assert ours.index(7.0) == 7
