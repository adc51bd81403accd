"""Every Python example in the README runs."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import CAPTURE, assert_no_new_segments, segment_names

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_readme_has_examples():
    assert len(BLOCKS) >= 5


# Examples that start processes run under every start method: the default is
# fork up to 3.13 and forkserver from 3.14 on Linux.
STARTS_PROCESSES = re.compile(r"Pool|Process|Manager|Executor|joblib|dask")
CASES = [(code, method) for code in BLOCKS
         for method in (["fork", "forkserver", "spawn"] if STARTS_PROCESSES.search(code)
                        else [None])]


@pytest.mark.parametrize("code, method", CASES,
                         ids=["%s-%s" % (c.splitlines()[0][:40], m) for c, m in CASES])
def test_readme_example_runs_and_cleans_up(code, method, tmp_path):
    # Run as a script (spawned workers import its __main__): it must clean up
    # after itself, so that neither a segment nor the resource tracker's
    # "leaked" warning is left.
    if "dask.distributed" in code:
        pytest.importorskip("distributed")
    before = segment_names()
    script = tmp_path / "example.py"
    if method is not None:
        code = ("import multiprocessing\nmultiprocessing.set_start_method(%r, force=True)\n"
                % method) + code
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], **CAPTURE, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "resource_tracker" not in proc.stderr and "leaked" not in proc.stderr, proc.stderr
    assert_no_new_segments(before)
