"""``python -m robustkit`` (and ``torchrun -m robustkit``) run the CLI."""

from robustkit.cli import main

main()
