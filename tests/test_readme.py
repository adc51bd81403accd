"""Every Python example in the README runs."""
import re
from pathlib import Path

import pytest

from helpers import assert_no_new_segments, run_python, segment_names

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_readme_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("code", BLOCKS, ids=[b.splitlines()[0][:40] for b in BLOCKS])
def test_readme_example_runs_and_cleans_up(code):
    # Run as a script: it must clean up after itself, so that neither a
    # segment nor the resource tracker's "leaked" warning is left.
    before = segment_names()
    proc = run_python(code)
    assert "Traceback" not in proc.stderr
    assert "resource_tracker" not in proc.stderr and "leaked" not in proc.stderr, proc.stderr
    assert_no_new_segments(before)
