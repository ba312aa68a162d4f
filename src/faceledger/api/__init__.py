"""The REST service: a thin FastAPI layer over :class:`faceledger.operations.Operations`,
with API keys and roles. Each endpoint calls one operation as the key's holder (and the
request's purpose), which writes the audit ledger entry itself; the answer carries its
``ledger_seq``. Start it with ``faceledger serve``; the OpenAPI page is at ``/docs``."""

from faceledger.api.app import create_app

__all__ = ["create_app"]
