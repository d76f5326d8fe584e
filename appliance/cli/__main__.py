"""``python -m appliance.cli``: the same as the ``vmkeep`` command."""

import sys

from appliance.cli.commands import main

sys.exit(main())
