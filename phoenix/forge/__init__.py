"""The forge itself: the Gitea that runs today, its files, its identity, its API."""
