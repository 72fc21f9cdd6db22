"""The baseline: a bare Flask endpoint that answers "ok", served exactly like the core."""

from flask import Flask

app = Flask(__name__)


@app.post("/internal/messages")
@app.get("/ok")
def ok() -> str:
    return "ok"
