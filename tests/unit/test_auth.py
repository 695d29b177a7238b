"""Pure parts of authentication: which role an operation needs, tokens kept as hashes, the
settings that configure them, and Kafka credentials passed through to every client."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from faststream.security import SASLScram512

from services.shared.auth import Role, Tokens, hash_token, main, new_token, required_role
from services.shared.settings import Settings


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", None),
        ("GET", "/openapi.json", None),
        ("GET", "/docs", None),
        ("GET", "/objectives", Role.reader),
        ("GET", "/tree", Role.reader),
        ("POST", "/objectives", Role.writer),
        ("PUT", "/kpis/churn", Role.writer),
        ("POST", "/readings", Role.writer),
        ("GET", "/audit/verify", Role.auditor),
        ("GET", "/objectives/1/history", Role.auditor),
        ("GET", "/kpis/churn/history", Role.auditor),
    ],
)
def test_required_role(method: str, path: str, role: Role | None) -> None:
    assert required_role(method, path) == role


def test_tokens_are_kept_as_hashes_and_recognised() -> None:
    token, entry = new_token("ci", [Role.reader, Role.writer])
    assert token not in entry.model_dump_json()
    assert entry.sha256 == hash_token(token)
    tokens = Tokens.parse(json.dumps([entry.model_dump(mode="json")]))
    principal = tokens.authenticate(token)
    assert principal is not None
    assert principal.name == "ci"
    assert principal.roles == {Role.reader, Role.writer}
    assert tokens.authenticate(token + "x") is None


def test_settings_refuse_to_run_open_by_accident(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="OKR_AUTH_TOKENS"):
        Settings(auth_disabled=False).tokens()
    assert Settings(auth_disabled=True).tokens() is None
    _, entry = new_token("ops", [Role.auditor])
    file = tmp_path / "tokens.json"
    file.write_text(json.dumps([entry.model_dump(mode="json")]))
    assert Settings(auth_disabled=False, auth_tokens_file=file).tokens() is not None
    with pytest.raises(ValueError, match="sha256"):
        Settings(
            auth_disabled=False, auth_tokens='[{"name":"x","roles":["reader"],"sha256":"no"}]'
        ).tokens()


def test_okr_token_prints_a_token_and_its_entry(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["okr-token", "grafana", "reader"])
    main()
    lines = capsys.readouterr().out.splitlines()
    token = lines[0].rsplit(" ", 1)[1]
    entry = json.loads(lines[1].split(": ", 1)[1])
    assert entry == {"name": "grafana", "roles": ["reader"], "sha256": hash_token(token)}
    monkeypatch.setattr(sys, "argv", ["okr-token", "x", "admin"])
    with pytest.raises(SystemExit, match="admin"):
        main()


def test_kafka_credentials_reach_every_client() -> None:
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="okr",
        kafka_sasl_password="secret",
    )
    options = settings.kafka_client_options()  # plain aiokafka: admin, tail readers, relay
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("okr", "secret")
    assert options["ssl_context"] is not None
    security = settings.kafka_security()  # the FastStream broker: consumers and DLQ producer
    assert isinstance(security, SASLScram512)
    assert security.use_ssl
