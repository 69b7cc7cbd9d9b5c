"""Loaded by every Python process started with this directory first on PYTHONPATH, and only by
benchmarks/choose_ladder.py: it cuts POST /choose short at the step ``BANDITS_LADDER`` names, so
that the ladder can measure what each step of the request costs under load. Nothing in the
service imports it; a server started without it serves as always.

Steps: ``parse`` (read and parse the body, reply), ``validate`` (also the key, the loop and the
request's validation), ``nowrite`` (the whole decision, but the log writer returns at once
without writing: not durable, a measurement only). Unset or anything else: the real service.
"""

import os

_STEP = os.environ.get("BANDITS_LADDER", "")

if _STEP == "parse":
    import orjson

    from bandits.api import fast

    _through = fast.FastChoose.__call__

    def _parse_only(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST" or not environ.get("CONTENT_LENGTH"):
            return _through(self, environ, start_response)
        body = orjson.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        reply = {"event_id": "x", "action": body["actions"][0]["id"], "probability": 1.0}
        data = orjson.dumps(reply)
        start_response("201 CREATED", [("Content-Type", "application/json"),
                                       ("Content-Length", str(len(data)))])
        return [data]

    fast.FastChoose.__call__ = _parse_only
elif _STEP == "validate":
    from bandits.services.decisions import DecisionService

    def _validated(self, loop, request, pool=None):
        # reached once the body is checked, from its bytes or parsed (bandits.api.fast)
        return {"event_id": "x", "action": request.actions[0].id, "probability": 1.0}

    DecisionService.choose = _validated
elif _STEP == "nowrite":
    from bandits.store.decisions import DecisionWriter

    DecisionWriter.write = lambda self, rows: [True] * len(rows)
