"""`bnml contracts`: the JSON Schema of every contract, keyed by subject."""

from __future__ import annotations

import json

from bnml.commands import add_json_option


def register(sub) -> None:
    p = sub.add_parser("contracts", help="print the JSON Schema of every bus message, keyed by subject")
    add_json_option(p, help="accepted for uniformity: the output is always JSON")
    p.set_defaults(func=_contracts)


def _contracts(args) -> int:
    from libs.common.subjects import CATALOG

    print(json.dumps({subject: model.model_json_schema() for subject, model in CATALOG.items()}, indent=2))
    return 0
