"""The baseline for benchmarks/choose_throughput.py: a bare Flask endpoint that only parses the
same JSON body (with the same parser as the service) and returns a small JSON reply."""

import orjson
from flask import Flask, Response, request

app = Flask("bare")


@app.post("/v1/loops/<loop>/choose")
def choose(loop):
    body = orjson.loads(request.get_data(cache=False))
    reply = {"event_id": "x", "action": body["actions"][0]["id"], "probability": 1.0}
    return Response(orjson.dumps(reply), status=201, mimetype="application/json")


@app.get("/healthz")
def healthz():
    return Response(b'{"status":"ok"}', mimetype="application/json")
