"""A local Azure Service Bus stand-in that the unmodified azure-servicebus SDK talks to over AMQP 1.0 + TLS.

Built on python-qpid-proton (dev-only). See emulator/README.md, section "Service Bus".
"""

from emulator.servicebus.broker import Broker
from emulator.servicebus.server import POLICY, ServiceBusStandIn

__all__ = ["POLICY", "Broker", "ServiceBusStandIn"]
