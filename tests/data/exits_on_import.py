"""A module that ends the program when imported."""

import sys

sys.exit(5)
