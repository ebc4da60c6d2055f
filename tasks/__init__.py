"""One module per concern, each with one public @deploy function that deploy.py calls."""
