"""Lab test files run in a lab of their own (one of LABS), beside the default lab's session
(`make test`).

It waits until the default lab's image is built (that session's lab fixture builds it), so
this lab boots from that image instead of building a second one at the same time; then it runs
pytest on the files given, in a lab on a subnet and ports of its own (phoenix/lab/config.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from phoenix.lab import config as labconfig
from phoenix.lab import image

# Beside the default lab (10.213.77.0/24, 8780-8782, 3142) and test_two_labs' second lab
# (third octet + 100, ports + 20): each lab its own subnet and ports.
LABS = {
    "beside": {
        "PHOENIX_LAB_TAG": "beside",
        "PHOENIX_LAB_SUBNET": "10.213.79.0/24",
        "PHOENIX_LAB_DO_PORT": "8790",
        "PHOENIX_LAB_CF_PORT": "8791",
        "PHOENIX_LAB_ARTIFACT_PORT": "8792",
        "PHOENIX_LAB_APT_PORT": "3143",
    },
    "third": {
        "PHOENIX_LAB_TAG": "third",
        "PHOENIX_LAB_SUBNET": "10.213.78.0/24",
        "PHOENIX_LAB_DO_PORT": "8770",
        "PHOENIX_LAB_CF_PORT": "8771",
        "PHOENIX_LAB_ARTIFACT_PORT": "8772",
        "PHOENIX_LAB_APT_PORT": "3144",
    },
}
ENV = LABS["beside"]
IMAGE_WAIT_S = 20 * 60  # then this lab builds its own: slower, never wrong


def wait_for_the_default_image() -> None:
    first = labconfig.load({k: v for k, v in os.environ.items() if k not in ENV})
    deadline = time.monotonic() + IMAGE_WAIT_S
    while not image.is_current(first) and time.monotonic() < deadline:
        time.sleep(5)


def main(argv: list[str]) -> int:
    """[--lab NAME] FILES... (pytest's arguments) in that lab; [--lab NAME] --down takes it
    down. NAME is one of LABS, "beside" when not given."""
    name = "beside"
    if argv[:1] == ["--lab"]:
        if len(argv) < 2 or argv[1] not in LABS:
            print(f"beside: --lab takes one of {', '.join(LABS)}", file=sys.stderr)
            return 2
        name, argv = argv[1], argv[2:]
    env_lab = LABS[name]
    if argv == ["--down"]:  # .ci/run: whatever happened, leave none of this lab's objects
        return subprocess.run(
            [sys.executable, "-m", "phoenix", "lab", "down"], env={**os.environ, **env_lab}
        ).returncode
    if os.geteuid() == 0:
        wait_for_the_default_image()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_LAB_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", *argv], env={**env, **env_lab}
    ).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
