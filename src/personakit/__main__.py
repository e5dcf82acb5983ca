"""``python -m personakit`` runs the command-line interface (same as the ``personakit`` command)."""

from personakit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
