"""Test session settings."""

import os

# The command line turns on JAX's persistent compilation cache in the user's
# cache directory; the tests keep out of it (the one test of the cache gives
# a directory of its own).
os.environ["FLOOD_JAX_COMPILE_CACHE"] = "off"
