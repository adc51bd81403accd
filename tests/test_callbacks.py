"""Python code run in the middle of a call -- __index__, __eq__, __array__,
__float__, iteration, a str subclass's methods, a GC finalizer -- may close
the list, unlink it or mutate an argument: every public call then raises a
clear exception (ValueError mentioning "closed" once the list is closed) or
completes correctly, never crashes, and leaves no segment behind.

The cases live in callback_cases.py.  They run in batches in child processes
(two at a time), so that a crash fails the case that was running -- the last
"START" line -- instead of ending the test run; the rest of the batch then
goes on in a new child.
"""
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import callback_cases
import pytest

from helpers import CAPTURE, SHM_DIR

SCRIPT = Path(__file__).resolve().parent / "callback_cases.py"
CASE_IDS = list(callback_cases.CASES)
CHILDREN = 2          # the machines have two cores


class Child:
    """One run of callback_cases.py on a list of cases."""

    def __init__(self, case_ids):
        proc = subprocess.Popen([sys.executable, str(SCRIPT), *case_ids],
                                **CAPTURE)
        try:
            # Returns once the child's resource tracker is gone too: it
            # shares the child's stderr.
            out, self.stderr = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, self.stderr = proc.communicate()
        self.returncode = proc.returncode
        self.reports = {}
        self.started = []
        for line in out.splitlines():
            if line.startswith("START "):
                self.started.append(line[len("START "):])
            elif line.startswith("RESULT "):
                report = json.loads(line[len("RESULT "):])
                self.reports[report["case"]] = report
        self.unfinished = next((c for c in self.started if c not in self.reports), None)
        # Each child names its segments psm_cb<pid>_...: a crash leaves them
        # for us to remove.
        prefix = "psm_cb%d_" % proc.pid
        self.leftovers = sorted(n for n in os.listdir(SHM_DIR) if n.startswith(prefix))
        for name in self.leftovers:
            try:
                os.unlink(os.path.join(SHM_DIR, name))
            except FileNotFoundError:
                pass

    def death(self):
        """How the child died, and what it printed last (its faulthandler traceback)."""
        if self.returncode < 0:
            how = "killed by %s" % signal.Signals(-self.returncode).name
        elif "Timeout (" in self.stderr:
            how = "hung: no result within the child's 30 s watchdog"
        else:
            how = "exited with status %d" % self.returncode
        # Not the resource tracker's cleanup after the crash: expected, and
        # what CI looks for in the log.
        lines = [line for line in self.stderr.splitlines()
                 if "resource_tracker" not in line and "warnings.warn(" not in line]
        return "%s\n--- the child's stderr (end) ---\n%s" % (how, "\n".join(lines)[-3000:])


def run_cases(case_ids):
    """Reports for case_ids, and the children that ran them."""
    reports, children = {}, []
    pending = list(case_ids)
    while pending:
        child = Child(pending)
        children.append(child)
        reports.update(child.reports)
        if child.unfinished is None:
            break
        crashed = child.unfinished
        if child.started.index(crashed) > 0:
            # Earlier cases may have done the damage: run this one alone.
            alone = Child([crashed])
            children.append(alone)
            if alone.unfinished is None:
                reports[crashed] = {"crash": "died in a batch after %d other cases (%s) but "
                                             "not alone" % (child.started.index(crashed),
                                                            child.death())}
                pending = pending[pending.index(crashed) + 1:]
                continue
            child = alone
        reports[crashed] = {"crash": child.death()}
        pending = pending[pending.index(crashed) + 1:]
    return reports, children


@pytest.fixture(scope="module")
def runs():
    shares = [CASE_IDS[k::CHILDREN] for k in range(CHILDREN)]
    with ThreadPoolExecutor(CHILDREN) as pool:
        results = list(pool.map(run_cases, shares))
    reports = {}
    for share_reports, _ in results:
        reports.update(share_reports)
    return reports, [child for _, children in results for child in children]


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_callback_never_crashes_and_ends_cleanly(runs, case_id):
    reports, _ = runs
    report = reports.get(case_id)
    if report is None:
        pytest.fail("%s never ran: its child died before it" % case_id, pytrace=False)
    if "crash" in report:
        pytest.fail("%s crashed the process: %s" % (case_id, report["crash"]), pytrace=False)
    if report["problems"]:
        pytest.fail("%s: %s\n  %s" % (case_id, report["outcome"],
                                      "\n  ".join(report["problems"])), pytrace=False)


def test_children_exit_cleanly_and_leave_nothing(runs):
    """A child that ran its cases to the end exits 0, warns of no leak and
    leaves no segment (a crashed child is its case's failure)."""
    _, children = runs
    for child in children:
        if child.unfinished is not None:
            continue
        assert child.returncode == 0, child.death()
        for words in ("resource_tracker", "leaked", "Exception ignored"):
            assert words not in child.stderr, child.stderr[-3000:]
        assert not child.leftovers, "segments left behind: %s" % child.leftovers
