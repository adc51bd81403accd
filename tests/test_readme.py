"""Every Python example in the README runs."""
import re
from pathlib import Path

import pytest

from helpers import run_python

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_readme_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("code", BLOCKS, ids=[b.splitlines()[0][:40] for b in BLOCKS])
def test_readme_example_runs(code):
    # The examples that create lists without unlinking them rely on the
    # resource tracker, exactly as a user's script would.
    proc = run_python(code)
    assert "Traceback" not in proc.stderr
