"""``python -m facegallery`` (and ``torchrun -m facegallery train ...``) run the command line."""

from facegallery.cli import main

if __name__ == "__main__":  # spawned worker processes import this module; they must not re-run the CLI
    main(prog_name="facegallery")
