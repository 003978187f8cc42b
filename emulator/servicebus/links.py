"""The AMQP side: connections, sessions and links as the azure-servicebus SDK opens them (proton reactor
thread).

Nodes a link may attach to: ``$cbs`` (put-token), ``<entity>/$management`` (request/response) and entities
(``queue``, ``queue/$DeadLetterQueue``, ``topic``, ``topic/Subscriptions/sub``…; addresses may carry the
``amqps://host/`` prefix the SDK puts in front). An entity link is refused with ``amqp:unauthorized-access``
unless an unexpired ``put-token`` on the same connection covers the entity.

Deliveries to a client's receiver and their settlement: emulator/servicebus/deliveries.py.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from proton import Delivery, Disposition, Endpoint, Handler, Link, Message

from emulator.servicebus import sections as sec
from emulator.servicebus.broker import Broker
from emulator.servicebus.cbs import Grants, put_token
from emulator.servicebus.deliveries import amqp_error, push, settle
from emulator.servicebus.entities import MAX_MESSAGE_BYTES, EntityError, entity_key

log = logging.getLogger("emulator.servicebus")

CBS = "$cbs"
MANAGEMENT_SUFFIX = "/$management"
INCOMING_CREDIT = 100
SIZE_EXCEEDED = "amqp:link:message-size-exceeded"


@dataclass
class LinkState:
    kind: str  # "cbs" | "management" | "entity"
    entity: str = ""
    receive_and_delete: bool = False
    replies: list[bytes] = field(default_factory=list)  # management / cbs answers waiting for credit


ManagementHandler = Callable[[str, Message], tuple[int, str, Any]]


class ServiceBusHandler(Handler):  # type: ignore[misc]  # proton is untyped
    """One handler for every connection of the stand-in."""

    def __init__(self, broker: Broker, policies: Mapping[str, str], management: ManagementHandler) -> None:
        super().__init__()
        self.broker = broker
        self.policies = dict(policies)
        self.management = management
        self.consumers: dict[str, list[Link]] = {}
        self._dirty: set[str] = set()
        broker.on_available = self._dirty.add

    # ---- connection / session -------------------------------------------------------------------------
    def on_connection_bound(self, event: Any) -> None:
        sasl = event.transport.sasl()
        sasl.allowed_mechs("ANONYMOUS")

    def on_connection_remote_open(self, event: Any) -> None:
        connection = event.connection
        connection.grants = Grants()
        connection.container = "servicebus-standin"
        if connection.state & Endpoint.LOCAL_UNINIT:
            connection.open()

    def on_session_remote_open(self, event: Any) -> None:
        if event.session.state & Endpoint.LOCAL_UNINIT:
            event.session.open()

    def on_session_remote_close(self, event: Any) -> None:
        event.session.close()

    def on_connection_remote_close(self, event: Any) -> None:
        event.connection.close()

    def on_connection_unbound(self, event: Any) -> None:
        self._forget(event.connection)

    def on_transport_closed(self, event: Any) -> None:
        if event.connection is not None:
            self._forget(event.connection)

    def _forget(self, connection: Any) -> None:
        for key, links in list(self.consumers.items()):
            self.consumers[key] = [link for link in links if link.connection != connection]

    # ---- attach / detach ----------------------------------------------------------------------------
    def on_link_remote_open(self, event: Any) -> None:
        link: Link = event.link
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        address = (link.remote_source if link.is_sender else link.remote_target).address or ""
        key = entity_key(address)
        try:
            state = self._attach(link, key)
        except EntityError as exc:
            link.open()
            link.condition = amqp_error(exc.condition, exc.description)
            link.close()
            return
        link.sb = state
        link.open()
        if link.is_receiver:
            if state.kind == "entity":
                link.max_message_size = MAX_MESSAGE_BYTES
            link.flow(INCOMING_CREDIT)
        elif state.kind == "entity":
            self.consumers.setdefault(state.entity, []).append(link)
            self._pump(link)

    def _attach(self, link: Link, key: str) -> LinkState:
        if key == CBS:
            return LinkState("cbs")
        grants: Grants = link.connection.grants
        if key.endswith(MANAGEMENT_SUFFIX):
            entity = key.removesuffix(MANAGEMENT_SUFFIX)
            self._authorize(grants, entity)
            self.broker.entity(entity)
            return LinkState("management", entity)
        self._authorize(grants, key)
        self.broker.entity(key)
        if link.is_receiver and (key.endswith("/$deadletterqueue") or "/subscriptions/" in key):
            raise EntityError("amqp:not-allowed", f"Cannot send to '{key}'.")
        return LinkState("entity", key, receive_and_delete=link.remote_snd_settle_mode == Link.SND_SETTLED)

    @staticmethod
    def _authorize(grants: Grants, entity: str) -> None:
        if not grants.allows(entity):
            raise EntityError(
                "amqp:unauthorized-access",
                f"Unauthorized access. 'Listen'/'Send' claim(s) are required for '{entity}'. "
                "Put a valid token on $cbs first.",
            )

    def on_link_remote_close(self, event: Any) -> None:
        link = event.link
        state = getattr(link, "sb", None)
        if state is not None and state.kind == "entity" and link.is_sender:
            self.consumers[state.entity] = [k for k in self.consumers.get(state.entity, []) if k != link]
        link.close()

    # ---- flow and deliveries -------------------------------------------------------------------------
    def on_link_flow(self, event: Any) -> None:
        link = event.link
        if link.is_sender:
            self._pump(link)
            self.pump_dirty()

    def on_delivery(self, event: Any) -> None:
        try:
            self._on_delivery(event)
        except Exception:
            log.exception("delivery handling failed")

    def _on_delivery(self, event: Any) -> None:
        delivery: Delivery = event.delivery
        link = delivery.link
        state: LinkState | None = getattr(link, "sb", None)
        if state is None:
            return
        if link.is_receiver:
            self._incoming(link, state, delivery)
        else:
            settle(self.broker, state.entity, delivery)
        self.pump_dirty()

    def _incoming(self, link: Link, state: LinkState, delivery: Delivery) -> None:
        if not delivery.readable or delivery.partial:
            return
        payload = bytes(link.recv(delivery.pending) or b"")
        link.advance()
        outcome, condition = Disposition.ACCEPTED, None
        try:
            if len(payload) > MAX_MESSAGE_BYTES:
                raise EntityError(  # noqa: TRY301 - the handler below turns it into the link's rejection
                    SIZE_EXCEEDED,
                    f"The received message (size {len(payload)} bytes) exceeds the "
                    f"limit ({MAX_MESSAGE_BYTES} bytes) currently allowed on the link.",
                )
            if state.kind == "entity":
                batch = sec.split_batch(payload)  # an SDK batch becomes one message per inner message
                self.broker.send(
                    state.entity, [(sections, sum(len(s.raw) for s in sections)) for sections in batch]
                )
            else:
                request = Message()
                request.decode(payload)
                self._request(link, state, request)
        except EntityError as exc:
            outcome, condition = Disposition.REJECTED, amqp_error(exc.condition, exc.description)
        except sec.SectionError as exc:
            outcome, condition = Disposition.REJECTED, amqp_error("amqp:decode-error", str(exc))
        if not delivery.settled:
            if condition is not None:
                delivery.local.condition = condition
            delivery.update(outcome)
        delivery.settle()
        if link.credit < INCOMING_CREDIT // 2:
            link.flow(INCOMING_CREDIT - link.credit)

    def _request(self, link: Link, state: LinkState, request: Message) -> None:
        props = dict(request.properties or {})
        if state.kind == "cbs":
            status, description = put_token(props, request.body, self.policies, link.connection.grants)
            reply = Message(
                correlation_id=request.id,
                properties={"status-code": status, "status-description": description},
            )
        else:
            status, description, body = self.management(state.entity, request)
            reply = Message(
                correlation_id=request.id,
                body=body,
                properties={"statusCode": status, "statusDescription": description},
            )
        reply_link = self._reply_link(link, state)
        if reply_link is None:
            log.warning("no reply link for %s on this connection", state.kind)
            return
        reply_link.sb.replies.append(bytes(reply.encode()))
        self._send_replies(reply_link)

    @staticmethod
    def _reply_link(link: Link, state: LinkState) -> Link | None:
        candidate = link.connection.link_head(Endpoint.LOCAL_ACTIVE)
        while candidate is not None:
            other = getattr(candidate, "sb", None)
            if (
                candidate.is_sender
                and other is not None
                and (other.kind, other.entity) == (state.kind, state.entity)
                and candidate.session == link.session
            ):
                return candidate
            candidate = candidate.next(Endpoint.LOCAL_ACTIVE)
        return None

    @staticmethod
    def _send_replies(link: Link) -> None:
        state: LinkState = link.sb
        while state.replies and link.credit > 0:
            delivery = link.delivery(uuid.uuid4().bytes)
            link.send(state.replies.pop(0))
            link.advance()
            delivery.settle()

    # ---- client receivers -------------------------------------------------------------------------------
    def pump_dirty(self) -> None:
        while self._dirty:
            key = self._dirty.pop()
            for link in list(self.consumers.get(key, [])):
                self._pump(link)

    def pump_all(self) -> None:
        for links in list(self.consumers.values()):
            for link in list(links):
                self._pump(link)

    def _pump(self, link: Link) -> None:
        state: LinkState = link.sb
        if state.kind != "entity":
            self._send_replies(link)
            return
        if link.state & Endpoint.LOCAL_ACTIVE:
            push(self.broker, link, state.entity, receive_and_delete=state.receive_and_delete)
