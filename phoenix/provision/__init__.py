"""New droplets: DigitalOcean through pydo, and a replacement droplet with its host key pinned."""
