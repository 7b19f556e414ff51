"""``python -m aspen`` runs the ``aspen`` CLI."""

from aspen.cli import main

if __name__ == "__main__":
    main()
