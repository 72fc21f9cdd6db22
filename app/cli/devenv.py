"""python -m app.cli.devenv PATH: write a development env file with fresh secrets (used by make demo)."""

import sys
from pathlib import Path

from app.settings import write_dev_env

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m app.cli.devenv PATH")
    target = Path(sys.argv[1])
    print(f"wrote {target} with fresh secrets" if write_dev_env(target) else f"{target} exists; keeping it")
