"""Allow ``python -m kvdesk``."""

import sys

from kvdesk.cli.main import main

sys.exit(main())
