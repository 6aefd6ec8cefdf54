"""Allow ``python -m kvdesk.cli``."""

import sys

from kvdesk.cli.main import main

sys.exit(main())
