"""``python -m inductscan.cli``: the ``inductscan`` command."""

from inductscan.cli import main

main()
