"""Entry point for ``python -m mdl``."""

from mdl.cli import main

if __name__ == "__main__":
    main()
