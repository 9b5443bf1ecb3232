"""``python -m allegro_ops``: the allegro-ops command line."""
import sys

from .cli import main

sys.exit(main())
