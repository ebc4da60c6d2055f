import itertools

import pytest

from phoenix.errors import PhoenixError
from phoenix.poll import poll


def test_poll_returns_the_first_answer():
    answers = iter([None, None, "up"])
    assert poll(lambda: next(answers), timeout=5, interval=0.001, what="x") == "up"


def test_poll_gives_up_at_the_deadline_with_one_line():
    calls = itertools.count()

    def never():
        next(calls)
        return None

    with pytest.raises(PhoenixError, match="sshd answers: not within 0.05 s"):
        poll(never, timeout=0.05, interval=0.01, what="sshd answers")
    assert next(calls) > 1


def test_poll_names_the_last_state_when_told_how():
    with pytest.raises(PhoenixError, match="still new"):
        poll(lambda: None, timeout=0.01, interval=0.01, what="active",
             error=lambda: "droplet 7 is still new")


def test_a_falsy_answer_other_than_none_ends_the_wait():
    assert poll(lambda: 0, timeout=1, what="x") == 0


def test_a_wait_says_what_it_awaits_and_for_how_long():
    said: list[str] = []
    answers = iter([None, "up"])
    poll(lambda: next(answers), timeout=300, interval=0.001, what="waiting for sshd on x",
         progress=said.append)
    assert said == ["waiting for sshd on x (up to 300 s)"]
