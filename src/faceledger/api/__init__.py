"""The REST service: a thin FastAPI layer over the Engine, with API keys, roles and the
audit ledger. Start it with ``faceledger serve``; the OpenAPI page is at ``/docs``."""

from faceledger.api.app import create_app

__all__ = ["create_app"]
