"""`python3 -m phoenix`: the CLI without the console script (a checkout or worktree)."""

from phoenix.cli import main

main()
