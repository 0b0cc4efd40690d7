"""`python -m bench`: see bench/routing.py."""

import sys

from bench.routing import main

sys.exit(main())
