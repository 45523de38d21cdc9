"""The chaos soak (benchmarks/chaos) in short, twice: with a fixed seed, and with a seed
derived from the commit under test (printed, with the command that replays it), so every
commit meets a workload and a fault plan of its own. A failing seed found anywhere becomes a
regression test: add it to SEEDS."""

from __future__ import annotations

import os
import subprocess

import pytest

from benchmarks.chaos.soak import Options, run
from tests.conftest import ROOT

MINUTES = 0.5  # of load; then the drain, the checks and the processes' stop
SEEDS = [17]


def commit_seed() -> int:
    """CHAOS_SEED if set; else the commit's first 8 hex digits as a number; else 0 (not a
    git checkout)."""
    if seed := os.environ.get("CHAOS_SEED"):
        return int(seed)
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 0
    return int(sha[:8], 16)


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_short_soak_with_a_fixed_seed(admin_url: str, seed: int) -> None:
    report = await run(Options(seed=seed, minutes=MINUTES), admin_url)
    assert not report.violations, report.text()
    assert report.history.operations["sale (earn)"] and report.history.faults["SIGKILL"]


async def test_a_short_soak_seeded_by_the_commit(
    admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed = commit_seed()
    options = Options(seed=seed, minutes=MINUTES, instances=2)
    with capsys.disabled():
        print(f"\nchaos soak seeded by the commit: seed {seed}")
    report = await run(options, admin_url)
    assert not report.violations, report.text()
