"""Toy v2-model Functions app that the devhost tests drive.

It covers each trigger kind the host supports and records every invocation in ``CALLS`` (module level), so
tests can see what the host passed in. Queue and route names come from ``%SETTING%`` expressions so the tests
also cover the host's setting resolution.
"""

from __future__ import annotations

import os
import threading
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

CALLS: list[tuple[str, object]] = []
_LOCK = threading.Lock()


def _record(name: str, value: object) -> None:
    with _LOCK:
        CALLS.append((name, value))


@app.queue_trigger(arg_name="msg", queue_name="%TOY_QUEUE%", connection="ToyStorage")
def work(msg: func.QueueMessage) -> None:
    """Records the decoded body and the dequeue count the host passed."""
    _record("work", (msg.get_body().decode(), msg.dequeue_count, msg.id))


@app.function_name("always_fails")
@app.queue_trigger(arg_name="msg", queue_name="%TOY_FAIL_QUEUE%", connection="ToyStorage")
async def failing(msg: func.QueueMessage) -> None:
    """Raises every time so the host retries it and finally poisons the message (async on purpose)."""
    _record("always_fails", msg.dequeue_count)
    raise RuntimeError("toy failure")


@app.route(route="items/{item_id:int}/{name?}", methods=["GET", "POST"])
def get_item(req: func.HttpRequest) -> func.HttpResponse:
    """Echoes route parameters, one query parameter and the body length."""
    item = req.route_params.get("item_id")
    name = req.route_params.get("name", "")
    body = f"{item}|{name}|{req.params.get('q', '')}|{len(req.get_body())}"
    return func.HttpResponse(body, status_code=200)


@app.route(route="nothing", methods=["POST"])
def nothing(req: func.HttpRequest) -> None:
    """Returns None, which the host turns into 204."""
    _record("nothing", req.get_body())


@app.route(route="open/{*rest}", auth_level=func.AuthLevel.ANONYMOUS)
def open_route(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous catch-all route."""
    return func.HttpResponse(req.route_params.get("rest", ""), status_code=200)


@app.route(route="boom", auth_level="anonymous")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    """Raises, so the host must answer 500."""
    raise ValueError("toy http failure")


@app.route(route="enqueue", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@app.queue_output(arg_name="out", queue_name="%TOY_QUEUE%", connection="ToyStorage")
def enqueue(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
    """Writes the request body to the work queue through an output binding (the host base64-encodes it)."""
    out.set(req.get_body().decode())
    return func.HttpResponse("queued", status_code=202)


@app.timer_trigger(arg_name="timer", schedule="%TOY_SCHEDULE%", run_on_startup=False)
def tick(timer: func.TimerRequest) -> None:
    """Records past_due."""
    _record("tick", timer.past_due)


@app.timer_trigger(arg_name="timer", schedule="0 0 0 13 * 5")
def friday13(timer: func.TimerRequest) -> None:
    """Raises: the host must log it and keep the schedule."""
    _record("friday13", timer.past_due)
    raise RuntimeError("unlucky")


def orders(sbmsg: func.ServiceBusMessage) -> None:
    """Fails for bodies starting with ``bad`` so the broker redelivers and dead-letters them; bodies starting
    with ``slow`` take 7 s (longer than the tests' 5 s lock: the host must renew it)."""
    body = sbmsg.get_body().decode()
    _record("orders", (body, sbmsg.delivery_count))
    if body.startswith("slow"):
        time.sleep(7.0)
    if body.startswith("bad"):
        raise RuntimeError("toy service bus failure")


# Like the real app: the Service Bus function exists only when its connection setting is present.
if os.environ.get("TOY_SERVICEBUS"):
    app.service_bus_queue_trigger(arg_name="sbmsg", queue_name="orders", connection="TOY_SERVICEBUS")(orders)
