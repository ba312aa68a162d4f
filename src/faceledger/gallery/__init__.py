"""Gallery storage, vector indexes and the open-set matcher."""

from faceledger.gallery.index import ExactIndex, VectorIndex
from faceledger.gallery.matcher import Matcher
from faceledger.gallery.store import Gallery, NewTemplate, SubjectInfo, TemplateInfo

__all__ = [
    "ExactIndex",
    "Gallery",
    "Matcher",
    "NewTemplate",
    "SubjectInfo",
    "TemplateInfo",
    "VectorIndex",
]
