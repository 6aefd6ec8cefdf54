"""Allow ``python -m kvdesk``."""

import sys

from kvdesk.cli import main

sys.exit(main())
