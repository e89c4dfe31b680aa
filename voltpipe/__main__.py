"""``python -m voltpipe`` runs the CLI."""

from voltpipe.cli import main

main()
