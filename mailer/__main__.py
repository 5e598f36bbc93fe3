"""`python -m mailer …` runs the same command line as the `mailer` console script."""

from mailer.cli import main

main()
