"""Where an existing Gitea keeps its files, from its unit and app.ini, by Gitea's own rules.

Used by the adopt deploy (tasks/adopt.py, with the facts of facts/gitea.py) and by
`phoenix adopt`, which reads the same facts over SSH to fingerprint the forge before and after.
The rules follow Gitea 1.22 (modules/setting/path.go, server.go, database.go, repository.go):
the config from `--config`/`-c` (relative to the custom folder), the work path from
`--work-path`, GITEA_WORK_DIR, app.ini's WORK_PATH, else the binary's folder; APP_DATA_PATH,
the SQLite file and the repository root default below it.
"""

from __future__ import annotations

import posixpath
from dataclasses import asdict, dataclass, field

from phoenix.errors import PhoenixError
from phoenix.forge import appini

FLAGS = {
    "-c": "config",
    "--config": "config",
    "-w": "work_path",
    "--work-path": "work_path",
    "-C": "custom_path",
    "--custom-path": "custom_path",
}
# Storage folders Gitea keeps below APP_DATA_PATH unless app.ini moves them elsewhere.
STORAGE = {
    ("attachment", "PATH"): "attachments",
    ("lfs", "PATH"): "lfs",
    ("picture", "AVATAR_UPLOAD_PATH"): "avatars",
    ("picture", "REPOSITORY_AVATAR_UPLOAD_PATH"): "repo-avatars",
    ("packages", "PATH"): "packages",
}


@dataclass
class GiteaInstall:
    binary: str
    config: str
    work_path: str
    custom_dir: str
    data_dir: str
    db_path: str
    repo_root: str
    run_user: str
    unit_file: str
    version: str | None = None
    outside_data: list[str] = field(default_factory=list)  # storage folders elsewhere
    secret_files: list[str] = field(default_factory=list)  # what app.ini's *_URI name

    def job_paths(self) -> dict:
        """The `gitea` section of the backup job's config.json."""
        return {
            "db_path": self.db_path,
            "repo_root": self.repo_root,
            "custom_dir": self.custom_dir,
            "data_dir": self.data_dir,
            "app_ini": self.config,
            "version": self.version or "unknown",
        }

    def to_dict(self) -> dict:
        return asdict(self)


def _flags(argv: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in FLAGS:
            if not eq:
                value = argv[i + 1] if i + 1 < len(argv) else ""
            found[FLAGS[name]] = value
    return found


def config_path(unit: dict) -> str:
    """app.ini's path as the unit starts Gitea."""
    argv = unit.get("argv") or []
    if not argv:
        raise PhoenixError("the Gitea unit has no ExecStart: cannot tell where Gitea is")
    flags, env = _flags(argv), unit.get("environment") or {}
    work = (
        flags.get("work_path")
        or env.get("GITEA_WORK_DIR")
        or unit.get("working_directory")
        or posixpath.dirname(argv[0])
    )
    custom = flags.get("custom_path") or env.get("GITEA_CUSTOM") or posixpath.join(work, "custom")
    config = flags.get("config") or posixpath.join(custom, "conf", "app.ini")
    return posixpath.normpath(config if posixpath.isabs(config) else posixpath.join(custom, config))


def describe(
    unit: dict | None,
    ini_text: str | None,
    *,
    version: str | None = None,
    unit_name: str = "gitea.service",
) -> GiteaInstall:
    """The install the unit and app.ini describe; an error for what Phoenix cannot back up."""
    if unit is None:
        raise PhoenixError(
            f"no {unit_name} on this host: Phoenix adopts a Gitea run by systemd "
            "(set adopt_gitea_unit if its unit has another name)"
        )
    config = config_path(unit)
    if ini_text is None:
        raise PhoenixError(f"{unit_name} starts Gitea with {config}, which does not exist")
    ini = appini.parse(ini_text)
    argv, env = unit["argv"], unit.get("environment") or {}
    flags = _flags(argv)
    work = posixpath.normpath(
        flags.get("work_path")
        or env.get("GITEA_WORK_DIR")
        or appini.value(ini, appini.ROOT, "WORK_PATH")
        or unit.get("working_directory")
        or posixpath.dirname(argv[0])
    )

    def below(path: str, base: str) -> str:
        return posixpath.normpath(path if posixpath.isabs(path) else posixpath.join(base, path))

    custom = below(flags.get("custom_path") or env.get("GITEA_CUSTOM") or "custom", work)
    data = below(appini.value(ini, "server", "APP_DATA_PATH") or "data", work)
    db_type = (appini.value(ini, "database", "DB_TYPE") or "sqlite3").lower()
    if db_type not in ("sqlite3", "sqlite"):
        raise PhoenixError(
            f"{config}: [database] DB_TYPE = {db_type}; Phoenix backs up SQLite forges only"
        )
    db = below(appini.value(ini, "database", "PATH") or "gitea.db", data)
    repos = below(appini.value(ini, "repository", "ROOT") or "gitea-repositories", data)
    outside = []
    for (section, key), default in STORAGE.items():
        path = below(appini.value(ini, section, key) or default, data)
        if not (path + "/").startswith(data.rstrip("/") + "/"):
            outside.append(path)
    run_user = appini.value(ini, appini.ROOT, "RUN_USER") or unit.get("user") or "git"
    return GiteaInstall(
        binary=argv[0],
        config=config,
        work_path=work,
        custom_dir=custom,
        data_dir=data,
        db_path=db,
        repo_root=repos,
        run_user=run_user,
        unit_file=unit.get("fragment_path") or "",
        version=version,
        outside_data=sorted(outside),
        secret_files=sorted(set(appini.secret_files(ini).values())),
    )
