"""The lab's wheelhouse: published from the cache kept per lock file, nothing else in it."""

from __future__ import annotations

from phoenix.lab import wheelhouse


def test_publish_serves_exactly_the_cached_wheels_of_the_lock(tmp_path, monkeypatch):
    lock = tmp_path / "requirements.txt"
    lock.write_text("six==1.0 --hash=sha256:" + "0" * 64 + "\n")
    monkeypatch.setenv("PHOENIX_LAB_WHEELHOUSE_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / wheelhouse.lock_sha256(lock)[:16]
    cached.mkdir(parents=True)
    (cached / "six-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (cached / ".complete").write_text("done\n")  # so nothing is downloaded
    dest = tmp_path / "artifacts" / "wheelhouse"
    dest.mkdir(parents=True)
    (dest / "old-0.1-py3-none-any.whl").write_bytes(b"stale")
    wheelhouse.publish(dest, lock, log=lambda m: None)
    assert sorted(p.name for p in dest.iterdir()) == ["six-1.0-py3-none-any.whl"]
    assert (dest / "six-1.0-py3-none-any.whl").read_bytes() == b"wheel"


def test_the_repository_lock_pins_every_wheel_by_hash():
    lines = [line.strip() for line in wheelhouse.LOCK.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    pins = [line for line in lines if "==" in line]
    hashes = [line for line in lines if line.startswith("--hash=sha256:")]
    assert len(pins) == len(hashes) > 60
    assert any(p.startswith("hermes-agent==0.19.0") for p in pins)
    assert any(p.startswith("aiohttp==") for p in pins)
