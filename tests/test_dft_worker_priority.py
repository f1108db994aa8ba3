"""A worker keeps the farm's low priority although it runs in a session (autogroup) of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/autogroup").exists(), reason="kernel without autogroup scheduling"
)

CHILD = """
import os
from pathlib import Path
from esrepro.dft.worker import keep_niceness_in_own_session
niceness = os.nice(7)
before = Path("/proc/self/autogroup").read_text().split()[-1]
keep_niceness_in_own_session()
after = Path("/proc/self/autogroup").read_text().split()[-1]
print(niceness, before, after)
"""


def test_worker_session_group_takes_the_worker_nice_value():
    # start_new_session as the farm starts workers: a fresh autogroup at nice 0.
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, check=True,
        start_new_session=True,
    ).stdout.split()
    niceness, before, after = out
    assert before == "0"
    assert after == niceness != "0"
