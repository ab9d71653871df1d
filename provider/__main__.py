"""``python -m provider`` runs the ``atoll`` CLI."""

from provider.cli import main

main()
