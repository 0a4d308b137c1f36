"""`python -m sockworks` runs the command line."""

from sockworks.cli import main

raise SystemExit(main())
