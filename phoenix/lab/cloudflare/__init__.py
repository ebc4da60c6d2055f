"""The lab's Cloudflare: its API server, the zones behind it and its name servers."""
