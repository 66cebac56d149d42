"""``python -m gallery``: the ``gallery`` command."""

from gallery.cli import main

if __name__ == "__main__":
    main()
