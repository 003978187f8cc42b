"""The Functions app: wiring only. Every trigger lives in a blueprint under ``unprovision/triggers/``.

The Service Bus event source is registered only when its connection setting is present at import time.
"""

from __future__ import annotations

import azure.functions as func

from unprovision.triggers import audit, http, queues, servicebus

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(queues.blueprint())
app.register_functions(http.blueprint())
app.register_functions(audit.blueprint())
if servicebus.configured():
    app.register_functions(servicebus.blueprint())
