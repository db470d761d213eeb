"""`python -m safety_roadmap` is the same as the `roadmap` command."""
import sys

from .cli import main

sys.exit(main())
