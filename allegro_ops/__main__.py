"""``python -m allegro_ops``: the allegro-ops command line."""
import sys

from .cli import main

if __name__ == "__main__":  # importing the module (e.g. the import-direction test) must not run the CLI
    sys.exit(main())
