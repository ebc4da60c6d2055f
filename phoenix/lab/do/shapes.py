"""The lab's DigitalOcean catalogue and shapes: regions, sizes, images, key formats, the names
DigitalOcean accepts, and `APIError`, which ends a request with the status DigitalOcean answers.

Shared by the account model (`account.py`, `actions.py`) and its HTTP server (`api.py`);
`contracts/digitalocean/openapi.json` holds the shapes to DigitalOcean's OpenAPI description.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from datetime import UTC, datetime

REGIONS = {
    "nyc1": "New York 1",
    "nyc3": "New York 3",
    "sfo3": "San Francisco 3",
    "ams3": "Amsterdam 3",
    "fra1": "Frankfurt 1",
    "lon1": "London 1",
}
SIZES = {  # slug: (memory MiB, vcpus, disk GB, transfer TB, USD a month)
    "s-1vcpu-1gb": (1024, 1, 25, 1.0, 6),
    "s-1vcpu-2gb": (2048, 1, 50, 2.0, 12),
    "s-2vcpu-2gb": (2048, 2, 60, 3.0, 18),
    "s-2vcpu-4gb": (4096, 2, 80, 4.0, 24),
    "s-4vcpu-8gb": (8192, 4, 160, 5.0, 48),
}
IMAGES = {"debian-12-x64": {"id": 152227015, "name": "12 x64", "distribution": "Debian"}}
KEY_TYPES = {
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
}
PROJECT_ID = "4e1bfbc3-dc3e-41f2-a18f-1b4d7ba71679"  # the account's default project
HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$")
TAG = re.compile(r"^[A-Za-z0-9_:-]{1,255}$")
NOT_FOUND = "The resource you were accessing could not be found."


class APIError(Exception):
    """Ends a request with DigitalOcean's error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def md5_fingerprint(public_key: str) -> str:
    """DigitalOcean's key fingerprint: colon-separated MD5 of the key blob."""
    digest = hashlib.md5(key_blob(public_key)).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def key_blob(public_key: str) -> bytes:
    words = public_key.split()
    invalid = APIError(422, "Key invalid, key should be of the format `type key [comment]`")
    if len(words) < 2 or words[0] not in KEY_TYPES:
        raise invalid
    try:
        blob = base64.b64decode(words[1], validate=True)
        (length,) = struct.unpack(">I", blob[:4])
    except (binascii.Error, struct.error):
        raise invalid from None
    if blob[4 : 4 + length] != words[0].encode():
        raise invalid
    return blob


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def not_found() -> APIError:
    return APIError(404, NOT_FOUND)


def region_json(slug: str) -> dict:
    return {
        "slug": slug,
        "name": REGIONS.get(slug, slug),
        "available": True,
        "features": ["backups", "ipv6", "metadata", "install_agent", "storage"],
        "sizes": list(SIZES),
    }


def size_json(slug: str) -> dict:
    memory, vcpus, disk, transfer, monthly = SIZES.get(slug, (0, 0, 0, 0.0, 0))
    return {
        "slug": slug,
        "memory": memory,
        "vcpus": vcpus,
        "disk": disk,
        "transfer": transfer,
        "price_monthly": monthly,
        "price_hourly": round(monthly / 672, 5),
        "regions": list(REGIONS),
        "available": True,
        "description": "Basic",
    }


def image_json(slug: str) -> dict:
    known = IMAGES.get(slug, {"id": 0, "name": slug, "distribution": "Unknown"})
    return {
        **known,
        "slug": slug,
        "public": True,
        "regions": list(REGIONS),
        "type": "base",
        "min_disk_size": 15,
        "size_gigabytes": 2.36,
        "description": known["name"],
        "tags": [],
        "status": "available",
        "created_at": "2023-06-12T00:00:00Z",
    }
