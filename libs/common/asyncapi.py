"""The AsyncAPI 3.0 document of the bus, generated from the subject catalogue and the contracts.

Pure: no clock, no I/O. `bnml contracts --asyncapi` prints it; `docs/asyncapi.json` is its committed copy
(a unit test checks the copy is up to date, valid against the official AsyncAPI 3.0.0 JSON Schema, and that
every payload is its contract's JSON Schema).

- One channel per catalogue entry (`libs.common.subjects.CATALOG`); the address is the subject family with
  its `<param>` placeholders written as AsyncAPI parameters (`md.tick.{SYM}`).
- One message per contract model (a model that travels on several subjects, such as `Tick` on
  `md.tick.<SYM>` and `md.last.<SYM>`, is one message referenced by each channel).
- Each payload is the contract's own JSON Schema (`model_json_schema()`, what `bnml contracts` prints), with
  its nested definitions moved to `components/schemas` so that every `$ref` resolves inside this document.
- `x-bnml-stream` on a channel names the JetStream stream that keeps it (`subjects.STREAMS`), or is null
  for core NATS subjects (not kept).
"""

from __future__ import annotations

import re
from typing import Any

from libs.common.contracts import Message
from libs.common.subjects import CATALOG, stream_for

ASYNCAPI_VERSION = "3.0.0"
COMPONENT_REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")

_PARAM_DOCS: dict[str, str] = {
    "SYM": "Symbol in the exchange id form (`BTCUSDT`); the message carries the ccxt form (`BTC/USDT`)",
    "tf": "Candle timeframe (`1m`, `5m`, ...)",
    "service": "The sending service (`market_data`, `signal`, `risk`, `execution`, `ops_api`)",
    "severity": "Alert severity, lower case without the dash (`sev1` for `SEV-1`)",
    "subject": "The original subject of the message set aside (may have several tokens)",
}


def address(family: str) -> str:
    """`md.tick.<SYM>` -> `md.tick.{SYM}` (AsyncAPI's parameter syntax)."""
    return _PARAM.sub(r"{\1}", family)


def parameters(family: str) -> list[str]:
    """The placeholder names of a catalogue key, in order."""
    return _PARAM.findall(family)


def channel_id(family: str) -> str:
    """A stable id for a channel: the subject family with its placeholders bare (`md.tick.SYM`)."""
    return _PARAM.sub(r"\1", family)


def stream_name(family: str) -> str | None:
    """The JetStream stream that keeps the subject family, or None (core NATS)."""
    spec = stream_for(_PARAM.sub("*", family))
    return spec.name if spec is not None else None


def payload_schema(model: type[Message]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The contract's JSON Schema with refs into `components/schemas`, and the definitions it refers to."""
    schema = model.model_json_schema(ref_template=COMPONENT_REF)
    defs = schema.pop("$defs", {})
    return schema, defs


def _summary(model: type[Message]) -> str:
    doc = (model.__doc__ or "").strip()
    if not doc or doc.startswith(f"{model.__name__}("):  # pydantic's generated signature is no summary
        return model.__name__
    return " ".join(doc.split("\n\n")[0].split())


def document(catalog: dict[str, type[Message]] | None = None, version: str = "0.1.0") -> dict[str, Any]:
    """The whole AsyncAPI document as a JSON-ready dict (deterministic: same input, same output)."""
    catalog = CATALOG if catalog is None else catalog
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}

    for family, model in catalog.items():
        name = model.__name__
        if name not in messages:
            schema, defs = payload_schema(model)
            for def_name, definition in defs.items():
                if schemas.get(def_name, definition) != definition:
                    raise ValueError(f"two contracts define {def_name!r} differently; rename one of them")
                schemas[def_name] = definition
            messages[name] = {
                "name": name,
                "title": name,
                "summary": _summary(model),
                "contentType": "application/json",
                "payload": schema,
            }
        cid = channel_id(family)
        channel: dict[str, Any] = {
            "address": address(family),
            "title": family,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "x-bnml-stream": stream_name(family),
        }
        params = parameters(family)
        if params:
            channel["parameters"] = {p: {"description": _PARAM_DOCS.get(p, p)} for p in params}
        channels[cid] = channel
        operations[f"send.{cid}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{cid}"},
            "messages": [{"$ref": f"#/channels/{cid}/messages/{name}"}],
        }

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "BN-ML bus",
            "version": version,
            "description": (
                "Every NATS subject of BN-ML and the message it carries, generated from "
                "`libs/common/subjects.py` (CATALOG, STREAMS) and `libs/common/contracts` by "
                "`bnml contracts --asyncapi`. JSON payloads; money and quantities travel as strings."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": "localhost:4222",
                "protocol": "nats",
                "description": "The suite's NATS server (with JetStream); its address is the deployment's",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": dict(sorted(messages.items())), "schemas": dict(sorted(schemas.items()))},
    }
