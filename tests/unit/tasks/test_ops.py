"""tasks._ops.pip_index_args: where the Hermes Agent and Litestream installs take wheels from."""

from __future__ import annotations

from pyinfra.api import StringCommand

from tasks._ops import pip_index_args


def _line(args) -> str:
    return StringCommand(*args).get_raw_value()


def test_a_wheelhouse_is_the_only_source_and_plain_http_is_trusted_by_name():
    assert _line(pip_index_args("http://10.213.77.1:8782/wheels/", "https://pypi.org/simple")) \
        == "--no-index --find-links http://10.213.77.1:8782/wheels/ --trusted-host 10.213.77.1"


def test_a_local_wheelhouse_needs_no_trust_and_no_wheelhouse_means_the_index():
    assert _line(pip_index_args("/srv/wheels", "https://pypi.org/simple")) == \
        "--no-index --find-links /srv/wheels"
    assert _line(pip_index_args(None, "https://pypi.org/simple")) == \
        "--index-url https://pypi.org/simple"
