"""`python -m deltalearn`: the same command as `deltalearn`."""

from .cli import main

main()
