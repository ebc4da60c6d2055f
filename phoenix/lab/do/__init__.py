"""The lab's DigitalOcean: its API server, the account behind it and the droplet drivers."""
