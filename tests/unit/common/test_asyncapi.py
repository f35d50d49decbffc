"""The AsyncAPI document of the bus: valid against the official AsyncAPI 3.0.0 schema, complete (every
catalogue subject), faithful (every payload is its contract's JSON Schema) and committed up to date."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from libs.common import asyncapi
from libs.common.subjects import CATALOG

ROOT = Path(__file__).resolve().parents[3]
SPEC = ROOT / "tests" / "schemas" / "asyncapi-3.0.0.json"
SPEC_SHA256 = "d4571a420e6ffb7fcc7066c95a6db1202f299a3c51daa103d0706bf30f95e626"
COMMITTED = ROOT / "docs" / "asyncapi.json"


def _validator() -> jsonschema.protocols.Validator:
    raw = SPEC.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SPEC_SHA256, "the vendored AsyncAPI schema was changed"
    spec = json.loads(raw)

    def no_fetch(uri: str) -> Resource:  # every ref must resolve inside the vendored file
        raise AssertionError(f"the AsyncAPI schema refers outside itself: {uri}")

    cls = jsonschema.validators.validator_for(spec)
    cls.check_schema(spec)
    return cls(spec, registry=Registry(retrieve=no_fetch))


def _errors(doc: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in _validator().iter_errors(doc)]


def _deref(node: Any, root: dict[str, Any]) -> Any:
    """`node` with every local `$ref` replaced by what it points to (contracts have no recursive types)."""
    if isinstance(node, dict):
        if set(node) == {"$ref"} and node["$ref"].startswith("#/"):
            target: Any = root
            for part in node["$ref"][2:].split("/"):
                target = target[part]
            return _deref(target, root)
        return {k: _deref(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_deref(v, root) for v in node]
    return node


def _inlined_contract(model) -> Any:
    schema = model.model_json_schema()  # exactly what `bnml contracts` prints
    inlined = _deref(schema, schema)
    inlined.pop("$defs", None)
    return inlined


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return asyncapi.document()


def test_document_is_valid_asyncapi_3(doc):
    assert doc["asyncapi"] == "3.0.0"
    assert _errors(doc) == []


def test_validation_can_fail(doc):
    # positive controls: the validator does reject a broken document
    bad = copy.deepcopy(doc)
    del bad["channels"]["md.tick.SYM"]["address"]
    bad["channels"]["md.tick.SYM"]["addresss"] = "md.tick.{SYM}"
    assert _errors(bad)
    bad = copy.deepcopy(doc)
    bad["operations"]["send.md.tick.SYM"]["action"] = "publish"  # AsyncAPI 2 wording, invalid in 3.0
    assert _errors(bad)


def test_every_catalogue_subject_is_a_channel(doc):
    addresses = {ch["address"]: ch for ch in doc["channels"].values()}
    assert len(doc["channels"]) == len(CATALOG)
    for family in CATALOG:
        assert asyncapi.address(family) in addresses, family
        ch = addresses[asyncapi.address(family)]
        assert ch["title"] == family
        assert set(ch.get("parameters", {})) == set(asyncapi.parameters(family))
        op = doc["operations"][f"send.{asyncapi.channel_id(family)}"]
        assert op["channel"] == {"$ref": f"#/channels/{asyncapi.channel_id(family)}"}


def test_every_payload_is_the_contracts_json_schema(doc):
    for family, model in CATALOG.items():
        ch = doc["channels"][asyncapi.channel_id(family)]
        (ref,) = ch["messages"].values()
        message = _deref(ref, doc)
        assert message["name"] == model.__name__
        assert _deref(message["payload"], doc) == _inlined_contract(model), family


def test_streams_named_as_in_the_stream_specs(doc):
    ch = doc["channels"]
    assert ch["control.kill_switch"]["x-bnml-stream"] == "KILL_SWITCH"
    assert ch["risk.verdict.SYM"]["x-bnml-stream"] == "VERDICTS"
    assert ch["dlq.subject"]["x-bnml-stream"] == "DLQ"
    assert ch["md.tick.SYM"]["x-bnml-stream"] is None
    assert ch["control.trading"]["x-bnml-stream"] is None


def test_a_real_message_validates_against_its_payload(doc):
    from datetime import UTC, datetime
    from decimal import Decimal

    from libs.common.contracts import Tick

    tick = Tick(
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        symbol="BTC/USDT",
        bid=Decimal("1"),
        ask=Decimal("2"),
        last=Decimal("1.5"),
        volume=Decimal("0"),
    )
    payload = _deref(doc["components"]["messages"]["Tick"]["payload"], doc)
    jsonschema.validate(json.loads(tick.model_dump_json()), payload)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**json.loads(tick.model_dump_json()), "extra": 1}, payload)


def test_committed_document_is_up_to_date(doc):
    assert COMMITTED.is_file(), (
        "docs/asyncapi.json is missing: bnml contracts --asyncapi > docs/asyncapi.json"
    )
    committed = json.loads(COMMITTED.read_text())
    assert committed == doc, "docs/asyncapi.json is stale: bnml contracts --asyncapi > docs/asyncapi.json"


def test_cli_prints_the_document(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bnml.cli", "contracts", "--asyncapi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert json.loads(out) == asyncapi.document()
