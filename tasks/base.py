"""Runbook step 2: the base packages, unattended security upgrades, Docker behind a switch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import DeployError, deploy
from pyinfra.operations import apt, files, server, systemd

from facts.boot import BootSettled
from facts.dpkg import DpkgInterrupted

# The host data this task reads, each defined in group_data/all.py (tests/unit/test_tasks.py)
READS = (
    "base_apt_cache_time",
    "base_boot_wait_seconds",
    "base_docker_enabled",
    "base_docker_packages",
    "base_install_recommends",
    "base_packages",
    "base_packages_first",
    "base_unattended_upgrades",
)

FILES = Path(__file__).resolve().parent.parent / "files"
NONINTERACTIVE = "DEBIAN_FRONTEND=noninteractive"
# Packages dpkg must reinstall: half-installed (H), or flagged reinst-required (R).
HALF_INSTALLED = (
    "dpkg-query -W -f='${db:Status-Abbrev} ${binary:Package}\\n' "
    "| awk '$1 ~ /^(.H|..R)/ {print $2}'"
)


def wait_for_boot() -> None:
    """A fresh droplet is still busy for its first minute: cloud-init (keys, user_data) and
    the monitoring agent's install hold the dpkg lock, and apt fails at once on a held lock.
    Wait for both, bounded, and stop with a line that says who holds what."""
    seconds = host.data.base_boot_wait_seconds
    settled = host.get_fact(BootSettled, timeout=seconds)
    if settled["cloud_init"] == "running":
        raise DeployError(
            f"{host.name}: cloud-init is still running after {seconds} s; see "
            "`cloud-init status --long` and /var/log/cloud-init.log there"
        )
    if settled["cloud_init"] == "error":
        logger.warning(
            f"{host.name}: cloud-init finished with errors (`cloud-init status "
            "--long` there); going on, the deploy sets up what it needs itself"
        )
    if settled["locks_held"]:
        raise DeployError(
            f"{host.name}: the package lock is still held after {seconds} s: "
            + "; ".join(settled["locks_held"])
            + ". Wait for that process or stop it, then run the deploy again"
        )


@deploy("Install the base system")
def install_base(
    beside_packages: Callable[[], None] | None = None, later_packages: Sequence[str] = ()
) -> None:
    """`beside_packages`: operations run once base_packages_first are installed, before the
    rest (e.g. starting a long install in the background: tasks/hermes.py). `later_packages`:
    packages later tasks ensure themselves, installed here with the rest: one `apt-get
    install` instead of one per task (each run reads dpkg's database and runs its triggers
    again: 1-2.5 s apiece in the lab)."""
    wait_for_boot()
    # A converge killed during `apt-get install` leaves dpkg interrupted, and every apt call
    # fails until it is finished: finish it first (a no-op on a sound host). A package cut
    # off while unpacking needs a reinstall: the first pass fails on it (hence `|| true`),
    # the reinstall mends it, and the last pass must then succeed.
    if host.get_fact(DpkgInterrupted):
        server.shell(
            name="Finish the dpkg run that a cut-off converge left interrupted",
            commands=[
                f"{NONINTERACTIVE} dpkg --configure -a || true",
                f'pkgs=$({HALF_INSTALLED}); [ -z "$pkgs" ] || '
                f"{NONINTERACTIVE} apt-get install -y -q --reinstall $pkgs",
                f"{NONINTERACTIVE} apt-get install -f -y -q",
                f"{NONINTERACTIVE} dpkg --configure -a",
            ],
        )

    files.put(
        name="Ensure apt waits for the dpkg lock instead of failing",
        src=str(FILES / "apt" / "05lock-timeout"),
        dest="/etc/apt/apt.conf.d/05lock-timeout",
        user="root",
        group="root",
        mode="0644",
    )

    # Debian does not stamp successful updates, which apt's cache_time reads: stamp them,
    # also the daily ones of unattended-upgrades, so a converge skips a fresh `apt update`.
    files.put(
        name="Ensure apt records each successful update",
        src=str(FILES / "apt" / "15update-stamp"),
        dest="/etc/apt/apt.conf.d/15update-stamp",
        user="root",
        group="root",
        mode="0644",
    )
    packages = list(host.data.base_packages)
    packages += [name for name in later_packages if name not in packages]
    if host.data.base_docker_enabled:
        packages += host.data.base_docker_packages
    first = [name for name in packages if name in host.data.base_packages_first]
    options = dict(
        update=True,
        cache_time=host.data.base_apt_cache_time,
        no_recommends=not host.data.base_install_recommends,
    )
    if first and beside_packages:
        apt.packages(
            name="Ensure the base packages needed first are installed (Python's pip and venv)",
            packages=first,
            **options,
        )
        beside_packages()
    apt.packages(
        name="Ensure the base packages are installed",
        packages=packages,
        **options,
    )

    if host.data.base_unattended_upgrades:
        files.put(
            name="Ensure security upgrades are applied unattended, daily",
            src=str(FILES / "apt" / "20auto-upgrades"),
            dest="/etc/apt/apt.conf.d/20auto-upgrades",
            user="root",
            group="root",
            mode="0644",
        )

    if host.data.base_docker_enabled:
        systemd.service(
            name="Ensure Docker is running and enabled",
            service="docker.service",
            running=True,
            enabled=True,
        )
