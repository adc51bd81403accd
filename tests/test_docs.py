"""Every Python example in the README and the documentation runs; every other
code block says why it does not; the API reference lists every public name."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pyshl
from helpers import CAPTURE, assert_no_new_segments, segment_names

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# The pages: the README and docs/**/*.md, but not what the build makes or the
# recorded benchmark output (included by performance.md as it is).
PAGES = [ROOT / "README.md"] + sorted(
    path for path in DOCS.rglob("*.md")
    if not {"_build", "_generated", "results"} & set(path.relative_to(DOCS).parts))

FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", flags=re.S | re.M)
# A comment on the line right before a block: <!-- not run: REASON --> or
# <!-- example: requires Python 3.9 (...) -->.
MARKER = re.compile(r"^<!--\s*(not run|example):\s*(.*?)\s*-->$")


def code_blocks():
    """(page, line, language, code, marker kind, marker text) of every fenced
    block that is code, not a Sphinx directive such as ```{toctree}."""
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            language = match.group(1)
            if language.startswith("{"):
                continue
            before = text[:match.start()]
            marker = MARKER.match(before.rstrip("\n").rsplit("\n", 1)[-1])
            blocks.append((page.relative_to(ROOT).as_posix(), before.count("\n") + 1, language,
                           match.group(2), marker and marker.group(1),
                           marker and marker.group(2)))
    return blocks


BLOCKS = code_blocks()
EXAMPLES = [block for block in BLOCKS if block[2] == "python" and block[4] != "not run"]


def test_every_block_is_a_fence_at_the_margin():
    # Only ``` fences at the start of a line are collected above: no page may
    # hide a block in another form (indented, ~~~, or MyST's ::: and code-block).
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            assert not re.match(r"\s+```|~~~|:::|```\{code", line), "%s:%d" % (page, number)


def test_the_pages_have_examples():
    assert len(PAGES) >= 12
    assert len(EXAMPLES) >= 15
    assert any(page == "README.md" for page, *_ in EXAMPLES)


@pytest.mark.parametrize("page, line, language, code, kind, reason",
                         [block for block in BLOCKS if block not in EXAMPLES],
                         ids=["%s:%d" % block[:2] for block in BLOCKS if block not in EXAMPLES])
def test_a_block_that_does_not_run_says_why(page, line, language, code, kind, reason):
    assert kind == "not run" and len(reason) >= 10, (
        "%s:%d: a %s block that is not run needs <!-- not run: REASON --> on the line "
        "before it" % (page, line, language or "plain"))
    assert language, "%s:%d: give the block a language" % (page, line)


# Examples that start processes run under every start method: the default is
# fork up to 3.13 and forkserver from 3.14 on Linux.
STARTS_PROCESSES = re.compile(r"Pool|Process|Manager|Executor|joblib|dask")
CASES = [(page, line, code, reason, method)
         for page, line, _, code, _, reason in EXAMPLES
         for method in (["fork", "forkserver", "spawn"] if STARTS_PROCESSES.search(code)
                        else [None])]


@pytest.mark.parametrize("page, line, code, requirement, method", CASES,
                         ids=["%s:%d-%s" % (c[0], c[1], c[4]) for c in CASES])
def test_example_runs_and_cleans_up(page, line, code, requirement, method, tmp_path):
    # Run as a script (spawned workers import its __main__): it must clean up
    # after itself, so that neither a segment nor the resource tracker's
    # "leaked" warning is left.
    needed = re.search(r"requires Python (\d+)\.(\d+)", requirement or "")
    if needed and sys.version_info < (int(needed.group(1)), int(needed.group(2))):
        pytest.skip("the example needs Python %s.%s" % needed.groups())
    if "dask.distributed" in code:
        pytest.importorskip("distributed")
    before = segment_names()
    script = tmp_path / "example.py"
    if method is not None:
        # The examples ask for spawn, the strictest; each runs under every method.
        code = code.replace('get_context("spawn")', "get_context(%r)" % method)
        code = ("import multiprocessing\nmultiprocessing.set_start_method(%r, force=True)\n"
                % method) + code
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], **CAPTURE, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "resource_tracker" not in proc.stderr and "leaked" not in proc.stderr, proc.stderr
    assert_no_new_segments(before)


def test_the_api_reference_documents_every_public_name():
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = re.findall(r"\.\. auto(?:class|function|exception):: pyshl\.(\w+)", api)
    assert sorted(documented) == sorted(pyshl.__all__)


def test_the_readme_starts_with_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = FENCE.search(readme)
    assert first_block.group(1) == "bash"
    commands = first_block.group(2).splitlines()
    assert commands[0].startswith("pip install . && pyshl bench")
    assert commands[1].startswith('pip install -e ".[test]" && python -m pytest')
    assert readme.count("\n") <= 260
