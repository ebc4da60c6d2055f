"""Finding the Gitea a host runs today (facts/gitea.py, phoenix/forge/discover.py)."""

from __future__ import annotations

import pytest

from facts.gitea import GiteaUnit, GiteaVersion
from phoenix.errors import PhoenixError
from phoenix.forge.discover import describe

SHOW = """\
LoadState=loaded
ActiveState=active
MainPID=812
ExecStart={ path=/usr/local/bin/gitea ; argv[]=/usr/local/bin/gitea web -c /var/lib/gitea/custom/conf/app.ini ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }
User=gitea
Group=gitea
WorkingDirectory=/var/lib/gitea
Environment=USER=gitea HOME=/home/gitea GITEA_WORK_DIR=/var/lib/gitea
FragmentPath=/etc/systemd/system/gitea.service
"""
INI = """\
RUN_USER = gitea
WORK_PATH = /var/lib/gitea
[server]
LFS_START_SERVER = true
[database]
DB_TYPE = sqlite3
[lfs]
PATH = /srv/lfs
"""


def test_the_unit_and_app_ini_say_where_everything_is():
    unit = GiteaUnit().process(SHOW.splitlines())
    assert unit["argv"][-1] == "/var/lib/gitea/custom/conf/app.ini" and unit["main_pid"] == 812
    forge = describe(unit, INI, version="1.22.3")
    assert (forge.config, forge.data_dir, forge.db_path, forge.repo_root, forge.custom_dir) == (
        "/var/lib/gitea/custom/conf/app.ini", "/var/lib/gitea/data",
        "/var/lib/gitea/data/gitea.db", "/var/lib/gitea/data/gitea-repositories",
        "/var/lib/gitea/custom")
    assert forge.run_user == "gitea" and forge.unit_file == "/etc/systemd/system/gitea.service"
    assert forge.outside_data == ["/srv/lfs"]   # saved besides, below files/


def test_a_relative_config_is_below_the_custom_folder_and_no_unit_is_a_clear_error():
    unit = GiteaUnit().process(SHOW.replace("-c /var/lib/gitea/custom/conf/app.ini",
                                            "--config=conf/other.ini").splitlines())
    assert describe(unit, "").config == "/var/lib/gitea/custom/conf/other.ini"
    assert GiteaUnit().process(["LoadState=not-found"]) is None
    with pytest.raises(PhoenixError, match="no gitea.service on this host"):
        describe(None, None)
    with pytest.raises(PhoenixError, match="SQLite forges only"):
        describe(unit, "[database]\nDB_TYPE = postgres\n")


def test_the_version_line():
    line = "Gitea version 1.22.3 built with GNU Make 4.3, go1.22.8 : bindata, sqlite"
    assert GiteaVersion().process([line]) == "1.22.3"
    assert GiteaVersion().process([]) is None
