"""The HTTP ceiling: a bare ASGI app that parses the JSON body with orjson and returns a constant.

No framework, no model, no validation: what uvicorn + httptools + orjson cost on their own.
"""

from __future__ import annotations

from typing import Any

import orjson

RESPONSE = orjson.dumps({"predictions": [0.0]})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if body:
        orjson.loads(body)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": RESPONSE})
