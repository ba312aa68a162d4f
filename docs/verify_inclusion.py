#!/usr/bin/env python3
"""Check a faceledger inclusion proof against a signed checkpoint, without faceledger.

    python verify_inclusion.py PROOF.json --vkey VKEY [--checkpoint CP]

PROOF.json is what ``faceledger audit prove SEQ --out PROOF.json --checkpoint CP`` writes;
VKEY is the ledger's public key (``name+keyhash+base64key``, the text or a file holding it);
CP is the signed checkpoint note (default: the one inside the proof). Exit 0 when the
entry in the proof is entry ``leaf_index + 1`` of the tree the checkpoint signs; 1 if not.

What is checked, in order (needs only the standard library and ``cryptography``):

1. the vkey is well formed and its key hash matches its key;
2. the note carries a valid Ed25519 signature by that key (C2SP signed-note: the body up
   to and including its last newline is what is signed);
3. the checkpoint body (origin, size, base64 root) matches the proof's origin and size;
4. the entry's own ``hash`` is SHA-256 of the canonical JSON of its other fields;
5. the leaf, SHA-256(0x00 || canonical JSON of all the entry's fields), with the audit
   path, leads to the checkpoint's root (RFC 9162 section 2.1.3.2).

Canonical JSON: ``json.dumps(fields, sort_keys=True, separators=(",", ":"),
ensure_ascii=False, allow_nan=False).encode("utf-8")``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Failed(Exception):
    """The proof does not hold; the message says why."""


def canonical(fields: dict) -> bytes:
    text = json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise Failed(f"{what} is not base64") from None


def parse_vkey(vkey: str) -> tuple[str, bytes, bytes]:
    """name, 4-byte key hash, 32-byte Ed25519 public key."""
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3 or not parts[0]:
        raise Failed("the vkey is not NAME+KEYHASH+BASE64KEY")
    name, hash_hex, material = parts
    raw = b64(material, "the vkey's key")
    if len(raw) != 33 or raw[0] != 0x01:
        raise Failed("the vkey is not an Ed25519 key")
    key_hash = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if key_hash.hex() != hash_hex:
        raise Failed("the vkey's key hash does not match its key")
    return name, key_hash, raw[1:]


def open_note(note: str, vkey: str) -> str:
    """The note's signed text, once its signature by ``vkey`` verifies."""
    name, key_hash, public = parse_vkey(vkey)
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise Failed("the checkpoint is not a signed note")
    text = note[: cut + 1]
    for line in note[cut + 2 : -1].split("\n"):
        if not line.startswith("\u2014 "):
            raise Failed(f"malformed signature line {line[:40]!r}")
        signer, _, blob = line[2:].partition(" ")
        raw = b64(blob, "a signature")
        if signer == name and raw[:4] == key_hash:
            try:
                Ed25519PublicKey.from_public_bytes(public).verify(raw[4:], text.encode("utf-8"))
            except InvalidSignature:
                raise Failed("bad signature: the checkpoint's signature does not verify") from None
            return text
    raise Failed(f"bad signature: the checkpoint carries no signature by {name}+{key_hash.hex()}")


def parse_checkpoint(text: str) -> tuple[str, int, bytes]:
    lines = text.split("\n")
    if len(lines) < 4 or not lines[1].isdigit():
        raise Failed("the checkpoint body is not origin, size, root")
    root = b64(lines[2], "the checkpoint root")
    if len(root) != 32:
        raise Failed("the checkpoint root is not 32 bytes")
    return lines[0], int(lines[1]), root


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes | None:
    """RFC 9162 section 2.1.3.2."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def check(proof: dict, note: str, vkey: str) -> str:
    origin, size, root = parse_checkpoint(open_note(note, vkey))
    if origin != proof.get("origin") or size != proof.get("tree_size"):
        raise Failed(
            f"the proof is for {proof.get('origin')!r} at size {proof.get('tree_size')}, "
            f"the checkpoint for {origin!r} at size {size}"
        )
    entry = proof.get("entry")
    index = proof.get("leaf_index")
    if not isinstance(entry, dict) or not isinstance(index, int) or entry.get("seq") != index + 1:
        raise Failed("the proof's entry is not entry leaf_index + 1")
    fields = {k: v for k, v in entry.items() if k != "hash"}
    if hashlib.sha256(canonical(fields)).hexdigest() != entry.get("hash"):
        raise Failed(f"entry {entry.get('seq')}: its hash does not match its fields")
    leaf = hashlib.sha256(b"\x00" + canonical(entry)).digest()
    try:
        path = [bytes.fromhex(h) for h in proof.get("audit_path", [])]
    except (TypeError, ValueError):
        raise Failed("the audit path is not hex hashes") from None
    if any(len(p) != 32 for p in path) or root_from_path(leaf, index, size, path) != root:
        raise Failed(f"entry {index + 1} is not in the tree of {size} entries the checkpoint signs")
    return (
        f"entry {index + 1} ({entry.get('action')}, {entry.get('at')}) is among the {size} "
        f"entries of {origin} that the checkpoint signs"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("proof", help="the proof document (JSON)")
    parser.add_argument("--vkey", required=True, help="the public key, or a file holding it")
    parser.add_argument("--checkpoint", help="the signed checkpoint (default: the proof's)")
    args = parser.parse_args(argv)
    try:
        with open(args.proof, encoding="utf-8") as fp:
            proof = json.load(fp)
        vkey = args.vkey
        if "+" not in vkey:
            with open(vkey, encoding="utf-8") as fp:
                vkey = fp.read()
        if args.checkpoint:
            with open(args.checkpoint, encoding="utf-8") as fp:
                note = fp.read()
        else:
            note = proof.get("checkpoint")
            if not isinstance(note, str):
                raise Failed("the proof holds no checkpoint: give --checkpoint CP")
        sys.stdout.write(f"OK: {check(proof, note, vkey)}\n")
        return 0
    except (OSError, ValueError, Failed) as exc:
        sys.stderr.write(f"FAILED: {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
