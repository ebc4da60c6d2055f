"""Runbook step 5: the backend, Hermes Agent's gateway with its OpenAI-compatible API server
answering /health (and /v1, with the operator's key) on backend_host:backend_port. Its unit is
started with the wizards' by run_wizards (tasks/_units.start_together): call that next."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from tasks.hermes import run_house

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = ("backend_host", "backend_house", "backend_port")


@deploy("Run the hermes backend")
def run_backend() -> None:
    data = host.data
    run_house(
        data.backend_house,
        unit="hermes-backend",
        api_server=True,
        description=f"the backend (API server on {data.backend_host}:{data.backend_port})",
    )
