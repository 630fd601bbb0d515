"""glibc malloc thresholds for training processes (forecast.memory)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from forecast import memory

# training steps in miniature: three 36 MB tensors (above the 32 MB that glibc at most serves from
# its heap by default) written and freed, twenty times; the page faults of the last ten times
PROBE = """
import resource, sys, torch
from forecast.memory import keep_freed_memory
print(keep_freed_memory(int(sys.argv[1])))
for step in range(20):
    if step == 10:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(9 << 20); y = x * 2; z = y + x; del x, y, z
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(megabytes: int) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(megabytes)], capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(memory._libc() is None, reason="glibc's mallopt is Linux/glibc only")
def test_a_freed_large_block_is_kept_for_the_next_one():
    set_default, faults_default = faults(0)
    set_kept, faults_kept = faults(256)
    assert not set_default and set_kept
    assert faults_default > 10 * 3 * 9_000  # every 36 MB mapped afresh: a fault per 4 KB page
    assert faults_kept < faults_default / 3  # (the heap's layout varies from run to run: now and then one is mapped again)


def test_zero_leaves_malloc_alone(monkeypatch):
    monkeypatch.setattr(memory, "_libc", lambda: pytest.fail("mallopt must not be called"))
    assert memory.keep_freed_memory(0) is False
