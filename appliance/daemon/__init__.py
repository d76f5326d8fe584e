"""The appliance process: one per home, serving the API on a Unix socket.

- The home folder is created with mode 0700 when missing; one that exists with group or
  other access is made private at start (each path changed named in the log and in the start
  notice) unless ``--allow-shared-home``; so are the folders of its local repositories (in a
  thread: they may be large). The appliance runs under ``umask 077``, so that what DuckDB
  makes itself (the catalog's WAL) is private too.
- One appliance per home: it holds ``flock`` on ``HOME/appliance.lock`` for its whole life.
- The socket is bound by the appliance itself under ``umask 0177``, so it is 0600 from the
  moment it exists (uvicorn's own ``uds=`` creates it world-accessible and chmods it later);
  every connection's peer uid is checked (``SO_PEERCRED``) and one from another uid is
  closed before a byte is read.
- ``start`` runs ``python -m appliance.daemon`` detached (new session, standard streams to
  ``HOME/appliance.log``) and returns once the appliance answers its handshake. When the
  appliance stops before it answers, it leaves why in ``HOME/appliance.failed`` (message,
  code, exit code) and ``start`` fails with that one line and exit code.
- The catalog is read in full before the appliance serves (``open_registry``): a damaged
  one, or a missing one in a home with other state, stops it (exit 13) with the commands that
  restore it; ``--new-catalog`` starts on a new, empty one on purpose.
- Its socket's folder must be its user's and writable by no one else, as its clients check
  (``appliance.client.check_socket_folder``); ``start`` refuses a home whose lock file is
  another user's, and reports an appliance already running only after the client's checks
  of the socket and of the process serving it (``SO_PEERCRED``) passed.
- ``stop`` asks it to stop over the API and waits until it is gone.
- At start it has its id (``HOME/appliance.id``, made the first time), marks the sessions a
  crash cut short interrupted, then, in a thread, removes the snapshots its finished sessions
  left (appliance/leftovers.py) and has the alerts looked for at once.

The modules: ``home_lock`` (the home made, made private and locked), ``listener`` (the
socket and the peer check), ``catalog_open`` (the catalog read in full at start),
``foreground`` (the appliance process: ``main``, ``serve``) and ``launcher`` (``start`` and
``stop`` from outside).
"""

from __future__ import annotations

from appliance.daemon.catalog_open import open_registry
from appliance.daemon.foreground import main, serve
from appliance.daemon.home_lock import AlreadyRunningError, tighten_home
from appliance.daemon.launcher import START_TIMEOUT, STOP_TIMEOUT, Started, start, stop
from appliance.daemon.listener import bind_socket, peer_uid

__all__ = ["START_TIMEOUT", "STOP_TIMEOUT", "AlreadyRunningError", "Started", "bind_socket",
           "main", "open_registry", "peer_uid", "serve", "start", "stop", "tighten_home"]
