"""Errors the CLI shows as one clear line instead of a traceback, each with its exit code.

The exit codes (README, "Exit codes"): 0 done, 1 failed, 2 usage (click's), 3 not configured
(a setting, secret, token, key or file missing or wrong: nothing was created or changed),
4 unhealthy (a forge or its backups past a threshold, a validation that failed), 130
interrupted (Ctrl-C)."""

OK = 0
FAILED = 1
USAGE = 2
NOT_CONFIGURED = 3
UNHEALTHY = 4
INTERRUPTED = 130


class PhoenixError(Exception):
    """An expected failure: the message says what failed and what to do next. `output`: the
    command's JSON result as far as it got (a recovery's report), printed with the error
    under --json."""

    exit_code = FAILED
    output: dict | None = None

    def to_dict(self) -> dict:
        """What `--json` prints for this failure: one document, the result so far and why
        it stopped."""
        return {
            "problems": [str(self)],
            **(self.output or {}),
            "error": str(self),
            "exit_code": self.exit_code,
        }


class NotConfigured(PhoenixError):
    """What the command needs is missing or wrong; found before anything was created or
    changed. `problems`: one line each, every one found (phoenix check)."""

    exit_code = NOT_CONFIGURED

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [message])

    def to_dict(self) -> dict:
        return {**super().to_dict(), "problems": self.problems}


class Unhealthy(PhoenixError):
    """The forge, its backups or a validation are past what they promise."""

    exit_code = UNHEALTHY
