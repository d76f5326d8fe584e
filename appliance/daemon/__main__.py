"""``python -m appliance.daemon``: run the appliance in the foreground (what ``start`` runs
detached)."""

from __future__ import annotations

import sys

from appliance.daemon.foreground import main

sys.exit(main())
