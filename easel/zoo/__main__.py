"""`python -m easel.zoo ...`: the zoo command line."""

import sys

from easel.zoo.cli import main

sys.exit(main())
