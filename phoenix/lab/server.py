"""The lab server process: DigitalOcean API, Cloudflare API, DNS, artifacts and the model
stand-in (under /v1/ on the artifact port) on the bridge.

Started detached by `phoenix lab up` (`python -m phoenix.lab.server`), stopped by `lab down`.
Droplets it creates outlive it (they are recorded in the ledger), so a restart loses nothing.
"""

from __future__ import annotations

import functools
import json
import signal
import threading
from dataclasses import asdict
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from phoenix.lab.cloudflare import api as cfapi
from phoenix.lab.cloudflare.dnsserver import DNSServer
from phoenix.lab.cloudflare.zones import Zones
from phoenix.lab.config import LabConfig, load
from phoenix.lab.do import api as doapi
from phoenix.lab.httpd import Exchange
from phoenix.lab.model import Model
from phoenix.lab.nspawn import LAST_DROPLET_HOST, NspawnDriver
from phoenix.lab.objects import Ledger
from phoenix.lab.pings import Receiver, pings_file


def reserved_pool(config: LabConfig) -> list[str]:
    net = config.subnet
    return [
        str(net.network_address + n)
        for n in range(LAST_DROPLET_HOST + 1, 251)
        if net.network_address + n in net
    ]


LAB_ZONE = "lab.test"
LAB_RECORD = "forge.lab.test"


def seed_zone(zones: Zones, config: LabConfig) -> None:
    """The lab's forge name, first pointing at an unused lab address (no forge yet)."""
    zone = zones.find_zone(LAB_ZONE) or zones.add_zone(LAB_ZONE)
    if not any(r["name"] == LAB_RECORD for r in zones.records(zone["id"])):
        zones.create(
            zone["id"],
            {
                "type": "A",
                "name": LAB_RECORD,
                "ttl": 3600,
                "content": str(config.subnet.network_address + 254),
                "proxied": False,
            },
        )


EXCHANGE_LIMIT = 50 * 2**20  # bytes of record per API and server run; past it, no more


def exchanges_file(config: LabConfig, api: str) -> Path:
    """Where the lab server records every exchange of `api` ("do", "cf") as JSON lines, for
    the contract tests to validate (tests/lab/test_faults.py)."""
    return config.state_dir / "logs" / f"exchanges-{api}.jsonl"


def jsonl_recorder(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # one server run's exchanges
    lock = threading.Lock()

    def record(exchange: Exchange) -> None:
        line = json.dumps(asdict(exchange), default=str) + "\n"
        with lock:
            if not path.exists() or path.stat().st_size < EXCHANGE_LIMIT:
                with path.open("a", encoding="utf-8") as out:
                    out.write(line)

    return record


class _Artifacts(SimpleHTTPRequestHandler):
    """The artifact files, the lab model's /v1/ endpoints and the alert receiver's /ping/."""

    ledger: Ledger  # set per server: whose address may read which droplet's seed
    model: Model  # set per server: the lab's model stand-in
    pings: Receiver  # set per server: the operator's alert URL (phoenix/lab/pings.py)

    def log_message(self, *args) -> None:
        pass

    def send_head(self):
        """A droplet's seed (its metadata: user_data holds its host key) only to itself, as
        DigitalOcean's link-local metadata service answers only the droplet asking."""
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        if parts[0] == "seed":
            record = self.ledger.read()["droplets"].get(parts[1] if len(parts) > 1 else "")
            if record is None or record.get("ip") != self.client_address[0]:
                self.send_error(403, "metadata is served to its own droplet only")
                return None
        return super().send_head()

    def do_GET(self) -> None:
        if self.model.handles(self.path):
            return self.model.serve(self)
        if self.pings.handles(self.path):
            return self.pings.serve(self)
        return super().do_GET()

    def do_POST(self) -> None:
        if self.model.handles(self.path):
            return self.model.serve(self)
        if self.pings.handles(self.path):
            return self.pings.serve(self)
        self.send_error(405, "the artifact server takes no uploads")


def main() -> None:
    config = load()
    ledger = Ledger(config.objects_file)
    do_token = config.do_token_file.read_text().strip()
    cf_token = config.cf_token_file.read_text().strip()
    zones_file = config.state_dir / "dns-zones.json"

    driver = NspawnDriver(config, ledger)
    do = doapi.make_server(
        driver,
        token=do_token,
        host=config.bridge_ip,
        port=config.do_port,
        reserved_ips=reserved_pool(config),
        network=str(config.subnet),
    )
    zones = Zones.load(zones_file)
    seed_zone(zones, config)
    cf = cfapi.make_server(token=cf_token, zones=zones, host=config.bridge_ip, port=config.cf_port)
    do.recorder = jsonl_recorder(exchanges_file(config, "do"))
    cf.recorder = jsonl_recorder(exchanges_file(config, "cf"))
    dns = DNSServer(zones, config.bridge_ip, config.dns_port)
    config.artifacts_dir.mkdir(parents=True, exist_ok=True)
    model = Model(
        key=(config.state_dir / "secrets" / "hermes_model_api_key").read_text().strip(),
        log=config.state_dir / "logs" / "model.log",
    )
    files = ThreadingHTTPServer(
        (config.bridge_ip, config.artifact_port),
        functools.partial(
            type(
                "Files",
                (_Artifacts,),
                {"ledger": ledger, "model": model, "pings": Receiver(pings_file(config))},
            ),
            directory=str(config.artifacts_dir),
        ),
    )
    files.daemon_threads = True

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    do.start()
    cf.start()
    dns.start()
    threading.Thread(target=files.serve_forever, daemon=True).start()
    print(
        f"lab server on {config.bridge_ip}: DO :{config.do_port} CF :{config.cf_port} "
        f"DNS :{config.dns_port}/udp+tcp artifacts :{config.artifact_port}",
        flush=True,
    )
    stop.wait()
    for server in (do, cf):
        server.stop()
    dns.stop()
    files.shutdown()


if __name__ == "__main__":
    main()
