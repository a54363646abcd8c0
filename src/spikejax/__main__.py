"""``python -m spikejax``: the ``spikejax`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
