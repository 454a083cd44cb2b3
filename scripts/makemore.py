"""makemore: train, evaluate and sample the character-level name models, in JAX or PyTorch.

The command line and the run live in the package (jaxgpt/common/makemore/cli.py and run.py), so
tests exercise them without importing this file; `python scripts/makemore.py --help` lists the flags.
"""

import sys

from jaxgpt.common.makemore.cli import main

if __name__ == "__main__":
    sys.exit(main())
