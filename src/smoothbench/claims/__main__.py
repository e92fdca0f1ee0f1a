"""`python -m smoothbench.claims`: the same as `smoothbench-claims`."""

from smoothbench.claims.cli import main

main()
