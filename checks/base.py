"""Runbook step 2: the base dependencies are installed."""

from __future__ import annotations

import pytest


def test_step2_base_packages_installed(host, settings):
    missing = [name for name in settings["base_packages"] if not host.package(name).is_installed]
    assert not missing, (
        f"base packages not installed: {', '.join(missing)} (runbook step 2: apt install them)"
    )


def test_step2_docker_active_when_enabled(host, settings):
    if not settings["base_docker_enabled"]:
        pytest.skip("base_docker_enabled is False: this forge runs no Docker")
    docker = host.service("docker")
    assert docker.is_running, (
        "Docker is enabled in group_data but the docker service is "
        "not running (systemctl status docker)"
    )
    assert docker.is_enabled, "the docker service is not enabled: it will not start at boot"
