"""A simulated experiment shared by the experiment tests (small, seeded: the same every run)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from approvals.simulate import START, Simulation, simulate

SHARES = {"champion": 0.45, "challenger": 0.45, "holdout": 0.10}


@pytest.fixture(scope="session")
def experiment_sim() -> Simulation:
    """28 days of simulated payments; the last 14 are the experiment's."""
    return simulate(30_000, seed=11, days=28)


@pytest.fixture(scope="session")
def experiment_start() -> datetime:
    """The experiment's start (naive UTC): day 14 of the simulation."""
    return (START + timedelta(days=14)).replace(tzinfo=None)
