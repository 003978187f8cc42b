"""A process that applies one event and can be killed mid-way (tests/integration/test_engine_kill.py).

Builds the production adapters from environment variables — the same way a Function instance would from
its settings — and calls ``Engine.apply`` once. Prints the outcome's status on success.

* ``UNPROV_DPS``: DPS service connection string
* ``UNPROV_HUBS``: JSON object, hub host name → hub connection string
* ``UNPROV_STORAGE`` + ``UNPROV_JOURNAL_PREFIX``: Table storage connection string and journal table prefix
* ``UNPROV_EVENT``: the lifecycle event JSON
* ``UNPROV_PAGE_SIZE`` / ``UNPROV_IN_FLIGHT`` / ``UNPROV_OPS_PER_MINUTE``: group-work knobs (small pages
  and one call in flight make the run long enough to be killed mid-way)
* ``UNPROV_LEASE_TTL``: seconds the event's target lease lives (``Engine.lease_ttl``; the product default
  when unset). A killed child never releases it: the re-run waits for it to expire.
* ``REQUESTS_CA_BUNDLE``: the emulator's CA

Connection strings come from the environment and are never printed.
"""

from __future__ import annotations

import json
import os
import sys

from shared.adapters.dps import DpsProvisioningService
from shared.adapters.iothub import HubRegistries
from shared.adapters.journal_tables import TableJournal
from shared.events import parse_event
from shared.policy import DEFAULT_POLICY
from unprovision.engine.core import Engine
from unprovision.engine.lease import DEFAULT_TTL
from unprovision.group.inprocess import GroupWork
from unprovision.throttle import HubBudget, InMemoryRateLimiter


def main() -> int:
    env = os.environ
    dps = DpsProvisioningService.from_connection_string(env["UNPROV_DPS"])
    registries = HubRegistries(json.loads(env["UNPROV_HUBS"]))
    journal = TableJournal.from_connection_string(env["UNPROV_STORAGE"], prefix=env["UNPROV_JOURNAL_PREFIX"],
                                                  create_tables=False)
    rate = float(env.get("UNPROV_OPS_PER_MINUTE", "100"))
    limiter = InMemoryRateLimiter(default=HubBudget(ops_per_minute=rate, burst=rate))
    work = GroupWork(page_size=int(env.get("UNPROV_PAGE_SIZE", "100")),
                     max_in_flight=int(env.get("UNPROV_IN_FLIGHT", "2")), limiter=limiter)
    ttl = float(env.get("UNPROV_LEASE_TTL") or DEFAULT_TTL)
    engine = Engine(dps=dps, registries=registries, journal=journal, policy=DEFAULT_POLICY, group_work=work,
                    lease_ttl=ttl)
    outcome = engine.apply(parse_event(env["UNPROV_EVENT"]))
    print(outcome.status)
    return 0


if __name__ == "__main__":
    sys.exit(main())
