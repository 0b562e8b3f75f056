"""``python -m polyhead`` (also what ``accelerate launch -m polyhead`` runs)."""

from polyhead.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
