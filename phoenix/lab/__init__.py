"""The lab: a DigitalOcean region (and a Cloudflare zone) on one Linux machine.

Droplets are systemd-nspawn containers booted from a cached Debian 12 image, each in its own
network namespace on a lab bridge; the API servers (do/ and cloudflare/) speak the subset of
the real APIs that pydo and the cloudflare SDK call.
"""
