"""Messages leaving the stand-in to a client's receiver, and the client's settlement of them.

Outgoing deliveries: the delivery tag is the lock token (``uuid.bytes_le``, the .NET Guid layout the SDK reads
back), the header carries the delivery count, message annotations carry ``x-opt-sequence-number``,
``x-opt-enqueued-time`` and ``x-opt-locked-until``; receive-and-delete deliveries leave pre-settled.

Settlement (emulator/README.md, "Service Bus"): accepted = complete, modified = abandon (or defer when
``undeliverable-here``), rejected = dead-letter with the ``DeadLetterReason`` / ``DeadLetterErrorDescription``
of its error info, released = give back without counting a delivery. Each is applied and echoed settled; a
settlement the broker cannot apply (lock expired, already settled) is echoed ``rejected`` with
``com.microsoft:message-lock-lost``, which the SDK raises as ``MessageLockLostError``.
"""

from __future__ import annotations

import uuid
from typing import Any

from proton import Condition, Delivery, Disposition, Link, symbol

from emulator.servicebus import sections as sec
from emulator.servicebus.broker import Broker
from emulator.servicebus.entities import EntityError


def amqp_error(condition: str, description: str) -> Condition:
    """An AMQP error as Service Bus sends it (with a tracking id)."""
    return Condition(condition, description, {symbol("com.microsoft:tracking-id"): str(uuid.uuid4())})


def push(broker: Broker, link: Link, entity: str, *, receive_and_delete: bool) -> None:
    """Send available messages of ``entity`` while the receiver has credit (locking them in peek-lock)."""
    while link.credit > 0:
        message = broker.take_next(entity) if receive_and_delete else broker.lock_next(entity)
        if message is None:
            break
        extra: dict[str, Any] = {
            "x-opt-sequence-number": message.sequence_number,
            "x-opt-enqueued-time": sec.ms_timestamp(message.enqueued_at),
        }
        if message.lock_token is not None:
            extra["x-opt-locked-until"] = sec.ms_timestamp(message.locked_until)
        payload = sec.rebuild(
            message.sections,
            delivery_count=message.delivery_count,
            extra_annotations=extra,
            extra_app_properties=message.extra_properties,
        )
        token = message.lock_token or uuid.uuid4()
        delivery = link.delivery(token.bytes_le)
        link.send(payload)
        link.advance()
        if receive_and_delete:
            delivery.settle()
        else:
            delivery.lock_token = token  # proton keeps attributes on the delivery's record
    if link.drain_mode and link.credit > 0:
        link.drained()


def settle(broker: Broker, entity: str, delivery: Delivery) -> None:
    """Apply the client's disposition of a peek-locked delivery and echo it settled."""
    remote = delivery.remote_state
    token = getattr(delivery, "lock_token", None)
    if token is None or not remote:
        if delivery.settled:
            delivery.settle()
        return
    delivery.lock_token = None
    echo, condition = remote, None
    try:
        if remote == Disposition.ACCEPTED:
            broker.complete(entity, token)
        elif remote == Disposition.RELEASED:
            broker.release(entity, token)
        elif remote == Disposition.MODIFIED:
            if delivery.remote.undeliverable:
                broker.defer(entity, token)
            else:
                broker.abandon(entity, token, delivery.remote.annotations)
            delivery.local.failed = True
            delivery.local.undeliverable = bool(delivery.remote.undeliverable)
        elif remote == Disposition.REJECTED:
            info = dict(getattr(delivery.remote.condition, "info", None) or {})
            named = {str(k): v for k, v in info.items()}
            description = getattr(delivery.remote.condition, "description", None)
            reason = named.get("DeadLetterReason")
            broker.dead_letter(entity, token, reason, named.get("DeadLetterErrorDescription", description))
        else:
            return
    except EntityError as exc:
        echo, condition = Disposition.REJECTED, amqp_error(exc.condition, exc.description)
    if not delivery.settled:
        if condition is not None:
            delivery.local.condition = condition
        delivery.update(echo)
    delivery.settle()
