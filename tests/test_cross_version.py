"""Two Python versions share one list by name (the 3.9+ layout everywhere).

Runs when PYSHL_OTHER_PYTHON names another interpreter with pyshl installed;
.ci/run sets it so that 3.7 and 3.8 share lists with the default Python.
"""
import os
import subprocess
import sys
import textwrap

import pytest

from helpers import CAPTURE
from pyshl import ShareableList

OTHER = os.environ.get("PYSHL_OTHER_PYTHON")
pytestmark = pytest.mark.skipif(not OTHER, reason="PYSHL_OTHER_PYTHON is not set")


def run_other(code):
    proc = subprocess.run([OTHER, "-c", textwrap.dedent(code)], **CAPTURE, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("\n")


def test_two_python_versions_read_and_write_one_list(make):
    ours = make([1, "text", 2.5, None, b"bytes", True, 0])
    lines = run_other(f"""
        import sys
        from pyshl import ShareableList
        sl = ShareableList(name={ours.shm.name!r})
        assert sl.tolist() == [1, "text", 2.5, None, b"bytes", True, 0], sl.tolist()
        sl[1] = "é€"
        sl[3] = -7
        sl.fetch_add(6, 5)
        sl.close()
        theirs = ShareableList(["from", 2, "%d.%d" % sys.version_info[:2]], track=False)
        print("%d.%d" % sys.version_info[:2])
        print(theirs.shm.name)
        theirs.close()
    """)
    other_version, name = lines[0], lines[1]
    assert other_version != "%d.%d" % sys.version_info[:2]
    assert ours.tolist() == [1, "é€", 2.5, -7, b"bytes", True, 5]

    theirs = ShareableList(name=name, track=True)   # ours now: unlinked when we finish
    try:
        assert theirs.tolist() == ["from", 2, other_version]
        theirs[1] = 3
        assert run_other(f"""
            from pyshl import ShareableList
            sl = ShareableList(name={name!r})
            print(sl[1])
            sl.close()
        """)[0] == "3"
    finally:
        theirs.close()
        theirs.unlink()
