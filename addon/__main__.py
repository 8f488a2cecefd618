"""`python -m addon build | render | demo`: the add-on's command line lives in commands/blender.py, apart from the
add-on (this file and commands/ stay out of the extension zip)."""

import sys

from commands.blender import main

if __name__ == "__main__":
    sys.exit(main())
