"""Signed checkpoints of the ledger: C2SP tlog-checkpoint notes over its Merkle tree.

A hash chain shows an edited entry, but not a cut-off tail or a chain rewritten from some
entry on with every hash recomputed. A *checkpoint* published outside the database does:
it commits to the first ``size`` entries with the root of a Merkle tree (RFC 9162
hashing, see :mod:`faceledger.ledger.merkle`), and is signed with a key that is kept out
of the database. Later, anyone holding the note and the public key can check that the
ledger still starts with exactly those entries (a consistency proof), or that one entry
is among them (an inclusion proof).

**The leaves.** Leaf ``i`` (0-based) of the tree is the entry with ``seq = i + 1``; its
bytes are the canonical JSON of *all thirteen* fields of the entry, its own ``hash``
included::

    fields = {seq, at, actor, role, action, purpose, case_ref, inputs, result,
              gallery, model, prev_hash, hash}          # one line of `audit export`
    leaf   = json.dumps(fields, sort_keys=True, separators=(",", ":"),
                        ensure_ascii=False, allow_nan=False).encode("utf-8")
    leaf_hash = SHA-256(0x00 || leaf)

(``inputs`` is a JSON list; ``purpose``, ``case_ref`` and ``model`` may be null.) This is
:func:`faceledger.ledger.chain.canonical` of :meth:`LedgerEntry.as_json`, so an export
line, parsed and re-serialised that way, is the leaf.

**The note** (https://c2sp.org/tlog-checkpoint, https://c2sp.org/signed-note)::

    faceledger/gallery                                     origin
    20                                                     tree size, decimal
    2fFmY8Xp...=                                           root hash, base64
                                                           (blank line)
    — faceledger/gallery q7ZsVe...                         base64(key hash || Ed25519 signature)

The signature covers the three body lines, final newline included. The key hash is the
first 4 bytes of SHA-256(name || 0x0A || 0x01 || 32-byte public key); the public key is
shared as a *vkey*, ``<name>+<hex key hash>+<base64(0x01 || public key)>``, the format Go's
``golang.org/x/mod/sumdb/note`` and the transparency-log tooling read.

**The key file** holds the private key as PKCS#8 PEM (mode 0600), after a few lines of
explanatory text that name the key; it never goes into the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from faceledger.errors import ConfigError, FaceledgerError, InputError
from faceledger.ledger.chain import LedgerEntry, canonical

ALG_ED25519 = 0x01
"""The C2SP signed-note signature type of Ed25519."""
SIG_PREFIX = "— "
"""What a signature line starts with: U+2014 EM DASH, then a space."""
MAX_SIGNATURES = 100
MAX_NOTE_BYTES = 1 << 20
KEY_FILE_TITLE = "faceledger checkpoint signing key (Ed25519): keep it secret, never in a database"

_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_BAD_NAME = re.compile(r"[\s+]")
_SIZE = re.compile(r"0|[1-9][0-9]*")


class MalformedNoteError(InputError):
    """Text that is not a well-formed signed note or checkpoint."""

    def __init__(self, reason: str, source: str = "checkpoint note") -> None:
        super().__init__(source, reason)


class BadSignatureError(FaceledgerError):
    """A note without a valid signature by the expected key."""


def entry_leaf(entry: LedgerEntry) -> bytes:
    """The Merkle leaf bytes of a ledger entry (see the module docstring)."""
    return canonical(entry.as_json())


def key_hash(name: str, public: bytes) -> bytes:
    """The 4-byte C2SP key hash of an Ed25519 key named ``name``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public).digest()[:4]


def check_name(name: str) -> str:
    """A key name as C2SP allows it: non-empty, no spaces, no '+'."""
    if not isinstance(name, str) or not name or _BAD_NAME.search(name) or _CONTROL.search(name):
        raise ConfigError(
            f"{name!r} cannot name a signing key: it must be non-empty, with no spaces or '+'"
        )
    return name


def check_origin(origin: str) -> str:
    if (
        not isinstance(origin, str)
        or not origin.strip()
        or _CONTROL.search(origin)
        or ("\n" in origin)
    ):
        raise ConfigError(f"{origin!r} cannot be a checkpoint origin: one non-empty line")
    return origin


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise MalformedNoteError(f"{what} is not base64: {text[:60]!r}") from None


# ---- keys -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verifier:
    """A public key that checks note signatures: what a vkey carries."""

    name: str
    public: bytes

    @property
    def key_hash(self) -> bytes:
        return key_hash(self.name, self.public)

    @property
    def vkey(self) -> str:
        """``<name>+<hex key hash>+<base64(0x01 || public key)>``."""
        material = base64.b64encode(bytes([ALG_ED25519]) + self.public).decode()
        return f"{self.name}+{self.key_hash.hex()}+{material}"

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """A vkey -> its verifier; ConfigError naming what is wrong with it."""
        text = vkey.strip() if isinstance(vkey, str) else ""
        name, plus, rest = text.partition("+")
        hash_hex, plus2, material = rest.partition("+")
        if not (name and plus and plus2 and material):
            raise ConfigError(f"{text[:80]!r} is not a vkey (NAME+KEYHASH+BASE64KEY)")
        check_name(name)
        if not re.fullmatch(r"[0-9a-f]{8}", hash_hex):
            raise ConfigError(f"vkey {name}: its key hash {hash_hex!r} is not 8 hex digits")
        try:
            raw = base64.b64decode(material.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise ConfigError(f"vkey {name}: its key is not base64") from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise ConfigError(f"vkey {name}: not an Ed25519 key (type 0x01 and 32 bytes)")
        verifier = cls(name, raw[1:])
        if verifier.key_hash.hex() != hash_hex:
            raise ConfigError(f"vkey {name}: its key hash does not match its key")
        return verifier

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    """A named Ed25519 private key that signs checkpoints."""

    name: str
    private: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        return cls(check_name(name), Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> SigningKey:
        """A key from its 32-byte RFC 8032 seed (what a Go note signer key holds)."""
        return cls(check_name(name), Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def verifier(self) -> Verifier:
        public = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return Verifier(self.name, public)

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)

    def file_text(self) -> str:
        pem = self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        return f"{KEY_FILE_TITLE}\nname: {self.name}\nvkey: {self.verifier.vkey}\n{pem}"

    def save(self, path: Path) -> None:
        """Write the key file (mode 0600); never over an existing file."""
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConfigError(
                f"{path} exists: a signing key is never overwritten (rotate to a new file)"
            ) from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot write a key there ({exc.strerror})") from None
        try:
            with os.fdopen(handle, "w", encoding="ascii") as fp:
                if hasattr(os, "fchmod"):
                    os.fchmod(fp.fileno(), 0o600)
                fp.write(self.file_text())
                fp.flush()
                os.fsync(fp.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Read a key file written by :meth:`save`; ConfigError naming the problem."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"{path}: no signing key there "
                "(make one with: faceledger audit signing-key create --out KEYFILE)"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not text"
            raise ConfigError(f"{path}: cannot read the signing key ({reason})") from None
        header, begin, _ = text.partition("-----BEGIN")
        names = re.findall(r"^name: (.+)$", header, flags=re.MULTILINE)
        if not begin or len(names) != 1:
            raise ConfigError(f"{path}: not a faceledger signing key file (no name, or no PEM)")
        try:
            private = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: its private key cannot be read ({exc})") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise ConfigError(f"{path}: not an Ed25519 key")
        key = cls(check_name(names[0].strip()), private)
        stated = re.findall(r"^vkey: (.+)$", header, flags=re.MULTILINE)
        if stated and stated[0].strip() != key.verifier.vkey:
            raise ConfigError(f"{path}: its vkey line does not match its private key")
        return key


def key_file_problem(path: Path) -> str | None:
    """A warning when a key file can be read or written by anyone but its owner."""
    if os.name != "posix":
        return None
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return None
    if mode & 0o077:
        return (
            f"{path} is open to other users (mode {mode:04o}): anyone who can read it can sign "
            f"checkpoints; chmod 600 {path}"
        )
    return None


# ---- signed notes -------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_hash: bytes
    signature: bytes


def sign_note(text: str, key: SigningKey) -> str:
    """``text`` with a blank line and the signature line of ``key``."""
    _check_text(text)
    signature = key.sign(text.encode("utf-8"))
    blob = base64.b64encode(key.verifier.key_hash + signature).decode()
    return f"{text}\n{SIG_PREFIX}{key.name} {blob}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedNoteError("its text does not end with a newline")
    if _CONTROL.search(text):
        raise MalformedNoteError("its text holds control characters")


def split_note(note: str) -> tuple[str, list[NoteSignature]]:
    """A signed note's text and its signatures, unverified; MalformedNoteError if it is not
    one (signed-note rules: split at the last blank line, every signature line well formed)."""
    if not isinstance(note, str):
        raise MalformedNoteError("it is not text")
    if len(note.encode("utf-8", "surrogatepass")) > MAX_NOTE_BYTES:
        raise MalformedNoteError(f"it is larger than {MAX_NOTE_BYTES} bytes")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise MalformedNoteError("it has no blank line before its signatures")
    text, block = note[: cut + 1], note[cut + 2 :]
    _check_text(text)
    if not block.endswith("\n"):
        raise MalformedNoteError("its last signature line does not end with a newline")
    signatures = []
    for line in block[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise MalformedNoteError(f"{line[:60]!r} is not a signature line ('— NAME SIG')")
        name, space, blob = line[len(SIG_PREFIX) :].partition(" ")
        if not space or not name or _BAD_NAME.search(name) or " " in blob:
            raise MalformedNoteError(f"{line[:60]!r} is not a signature line ('— NAME SIG')")
        raw = _b64decode(blob, f"the signature by {name}")
        if len(raw) < 5:
            raise MalformedNoteError(f"the signature by {name} is too short")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    if len(signatures) > MAX_SIGNATURES:
        raise MalformedNoteError(f"it carries more than {MAX_SIGNATURES} signatures")
    return text, signatures


def open_note(note: str, verifier: Verifier) -> str:
    """The text of ``note`` once its signature by ``verifier`` checks; BadSignatureError
    when it carries none or the first one does not verify (as Go's ``note.Open``)."""
    text, signatures = split_note(note)
    for sig in signatures:
        if sig.name == verifier.name and sig.key_hash == verifier.key_hash:
            if verifier.verify(text.encode("utf-8"), sig.signature):
                return text
            raise BadSignatureError(
                f"bad signature: the signature by {verifier.name}+{verifier.key_hash.hex()} "
                "does not verify (the note was changed, or signed by another key)"
            )
    signers = ", ".join(f"{s.name}+{s.key_hash.hex()}" for s in signatures) or "none"
    raise BadSignatureError(
        f"bad signature: the note carries no signature by {verifier.name}+"
        f"{verifier.key_hash.hex()} (it is signed by {signers})"
    )


# ---- checkpoints --------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """The claim that the tree of the first ``size`` entries of ``origin`` has ``root``."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()
    """Further body lines (C2SP extension lines): kept, not interpreted."""

    def __post_init__(self) -> None:
        check_origin(self.origin)
        if self.size < 0:
            raise ValueError(f"a checkpoint size cannot be negative ({self.size})")
        if len(self.root) != 32:
            raise ValueError(f"a checkpoint root is 32 bytes, not {len(self.root)}")

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "".join(f"{line}\n" for line in (*lines, *self.extensions))

    def to_note(self, key: SigningKey) -> str:
        return sign_note(self.body(), key)

    @classmethod
    def from_body(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise MalformedNoteError("a checkpoint has an origin, a size and a root hash")
        origin, size, root64, *extensions = lines[:-1]
        if not origin:
            raise MalformedNoteError("the checkpoint's origin line is empty")
        if not _SIZE.fullmatch(size):
            raise MalformedNoteError(f"the checkpoint's size {size[:40]!r} is not a decimal")
        root = _b64decode(root64, "the checkpoint's root hash")
        if len(root) != 32:
            raise MalformedNoteError(f"the checkpoint's root hash is {len(root)} bytes, not 32")
        if any(not line for line in extensions):
            raise MalformedNoteError("the checkpoint holds an empty extension line")
        return cls(origin, int(size), root, tuple(extensions))

    @classmethod
    def parse(cls, note: str, verifier: Verifier) -> Checkpoint:
        """The checkpoint a signed note states, once its signature checks (its form is
        checked first, so a malformed note is named as such whoever signed it)."""
        stated = cls.parse_unverified(note)
        open_note(note, verifier)
        return stated

    @classmethod
    def parse_unverified(cls, note: str) -> Checkpoint:
        """What a note states, without checking any signature (to make a proof for it)."""
        return cls.from_body(split_note(note)[0])
