"""`bnml contracts`: the JSON Schema of every contract, keyed by subject; `--asyncapi`: the bus as an AsyncAPI
3.0 document (`libs/common/asyncapi.py`; its committed copy is `docs/asyncapi.json`)."""

from __future__ import annotations

import json

from bnml.commands import add_json_option


def register(sub) -> None:
    p = sub.add_parser("contracts", help="print the JSON Schema of every bus message, keyed by subject")
    add_json_option(p, help="accepted for uniformity: the output is always JSON")
    p.add_argument(
        "--asyncapi",
        action="store_true",
        help="print the AsyncAPI 3.0 document of the bus (channels, messages, payload schemas)",
    )
    p.set_defaults(func=_contracts)


def _contracts(args) -> int:
    if getattr(args, "asyncapi", False):
        from libs.common.asyncapi import document

        print(json.dumps(document(), indent=2))
        return 0
    from libs.common.subjects import CATALOG

    print(json.dumps({subject: model.model_json_schema() for subject, model in CATALOG.items()}, indent=2))
    return 0
