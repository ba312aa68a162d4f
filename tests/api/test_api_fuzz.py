"""Fuzzing every operation of the app's own OpenAPI schema with Schemathesis: whatever
comes in, no answer is a 5xx, and the answers keep the schema's promises.

Each operation is fuzzed with data that fits its schema (positive) and data that does not
(negative), each request carrying the key of a role the policy allows on its route (see
``apikit.POLICY``) so that the fuzz reaches the handlers rather than the 403 gate (the gate
is tested in ``test_api_authorisation``). Deterministic (``derandomize``) and bounded
(``MAX_EXAMPLES``) so that this file runs in well under a minute; on top, Schemathesis's
coverage cases (boundaries, missing and malformed parts, unexpected methods: about 600,
the same every run). For a deeper hunt: FACELEDGER_TEST_FUZZ_EXAMPLES=300
FACELEDGER_TEST_FUZZ_SEEDED=0 (several minutes).

Schemathesis's own ``schema.parametrize()`` needs the schema at import time, and its lazy
``from_fixture`` form does not run under pytest 9 (it sets ``node._nodeid``), so the
operations are parametrized here from the policy table and each is driven by its
``as_strategy()`` under ``@given``."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from faceledger.access import Role
from tests.api.apikit import HEADER, POLICY, PUBLIC, SIGN_IN, Api
from tests.conftest import MODELS, need

MAX_EXAMPLES = int(os.environ.get("FACELEDGER_TEST_FUZZ_EXAMPLES", "12"))
DERANDOMIZE = os.environ.get("FACELEDGER_TEST_FUZZ_SEEDED", "1") == "1"
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def fuzzed(make_api: Callable[..., Api]) -> Api:
    """Its own gallery: what the fuzz makes (subjects, keys, ledger entries) stays there.
    Models load only if a request gets as far as them."""
    need(MODELS)
    return make_api("fuzz", load=False, raise_errors=False)


@pytest.fixture(scope="module")
def api_schema(fuzzed: Api) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzzed.app)


def token_for(api: Api, method: str, path: str) -> str:
    """An active key of the first role allowed on the route (made anew if the fuzz revoked
    the one it had)."""
    role = min(POLICY[(method, path)], key=list(Role).index)
    name = f"fuzz-{role.value}"
    token = api.extra.get(name)
    if token is None or api.ops.keys.authenticate(token) is None:
        api.extra.pop(name, None)
        token = api.key(name, role)
    return token


def test_the_schema_documents_every_route(api_schema: schemathesis.BaseSchema) -> None:
    documented = {
        (op.method.upper(), op.path) for op in (r.ok() for r in api_schema.get_all_operations())
    }
    assert documented == set(POLICY) | set(PUBLIC) | {SIGN_IN}


def bounded(case: schemathesis.Case) -> schemathesis.Case:
    """The live feed runs for the ``seconds`` asked (up to 300): a valid number is held to
    half a second so that a fuzz case ends (invalid ones are still sent as generated)."""
    if case.path == "/v1/events/stream" and isinstance(case.query, dict):
        wanted = case.query.get("seconds")
        if isinstance(wanted, (int, float)) and not isinstance(wanted, bool) and wanted > 0.5:
            case.query = {**case.query, "seconds": 0.5}
    return case


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize(("method", "path"), sorted(POLICY))
def test_no_server_errors(
    api_schema: schemathesis.BaseSchema, fuzzed: Api, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]
    token = token_for(fuzzed, method, path)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=DERANDOMIZE,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.headers = {**(case.headers or {}), HEADER: token_for(fuzzed, method, path)}
        response = bounded(case).call()
        case.validate_response(response, checks=CHECKS)

    assert token
    fuzz()


@pytest.mark.parametrize(("method", "path"), sorted(POLICY))
def test_no_server_errors_on_coverage_cases(
    api_schema: schemathesis.BaseSchema, fuzzed: Api, method: str, path: str
) -> None:
    if not hasattr(api_schema, "iter_coverage_cases"):
        pytest.skip("this Schemathesis has no iter_coverage_cases")
    operation = api_schema[path][method]
    cases = list(
        api_schema.iter_coverage_cases(
            operation,
            generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
            generation_config=api_schema.config.generation_for(operation=operation),
        )
    )
    assert cases
    for case in cases:
        case.headers = {**(case.headers or {}), HEADER: token_for(fuzzed, method, path)}
        case.validate_response(bounded(case).call(), checks=CHECKS)
