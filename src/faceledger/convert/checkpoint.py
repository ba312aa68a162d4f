"""Read a PyTorch checkpoint (a ``torch.save`` zip archive) without PyTorch.

The archive holds ``<name>/data.pkl``, a pickle of the saved object whose tensors refer to
storages by key (``persistent_load``), and ``<name>/data/<key>``, each storage's raw
little-endian bytes. Unpickling runs whatever callables the pickle names, so the unpickler
here resolves only a short list of globals, each to a numpy stand-in written below:

* ``collections.OrderedDict``, the state dict itself;
* ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter``: a float or integer tensor,
  rebuilt as a numpy array (offset, size and stride into its storage checked);
* ``torch._utils._rebuild_qtensor``: a quantized tensor, rebuilt as :class:`QuantizedArray`
  (its int8 values with per-tensor or per-channel scale and zero point);
* the storage types (``torch.FloatStorage``, ``torch.QInt8Storage``, ...), the qschemes
  (``torch.per_tensor_affine``, ``torch.per_channel_affine``) and ``torch.qint8``, which
  are only markers.

Any other global (``os.system``, ``builtins.eval``, a class of the saving program) raises
a ``ModelError`` naming the file and the global, before anything is called.
"""

from __future__ import annotations

import collections
import io
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceledger.errors import ModelError

__all__ = ["QuantizedArray", "read_state_dict"]


@dataclass(frozen=True)
class StorageType:
    """Stands for ``torch.<Kind>Storage``: the element type of a storage's bytes."""

    name: str
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class Marker:
    """Stands for a torch constant that only labels data (``torch.qint8``, a qscheme)."""

    name: str


@dataclass(frozen=True)
class QuantizedArray:
    """A quantized tensor: ``float = (values - zero_point) * scale``.

    Per-tensor: ``scale`` and ``zero_point`` are 0-d arrays and ``axis`` is ``None``.
    Per-channel: they are 1-d, one entry per index of ``values`` along ``axis``.
    """

    values: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None

    def dequantize(self) -> np.ndarray:
        """float32 values, computed as ``(q - zero_point) * scale``."""
        shape = [1] * self.values.ndim
        if self.axis is not None:
            shape[self.axis] = -1
        zero = self.zero_point.astype(np.float32).reshape(shape)
        scale = self.scale.astype(np.float32).reshape(shape)
        return np.asarray((self.values.astype(np.float32) - zero) * scale, dtype=np.float32)


_STORAGES: Mapping[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "QInt8Storage": np.dtype("i1"),
    "QUInt8Storage": np.dtype("u1"),
}
_PER_TENSOR = Marker("torch.per_tensor_affine")
_PER_CHANNEL = Marker("torch.per_channel_affine")
_MARKERS: Mapping[str, Marker] = {
    "per_tensor_affine": _PER_TENSOR,
    "per_channel_affine": _PER_CHANNEL,
    "qint8": Marker("torch.qint8"),
    "quint8": Marker("torch.quint8"),
}
_STORAGE_KEY = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class _Storage:
    """One storage read from the archive: a flat array of its element type."""

    data: np.ndarray


def _strided(storage: Any, offset: Any, size: Any, stride: Any, where: str) -> np.ndarray:
    """A copy of the elements of ``storage`` that a tensor views, bounds checked."""
    if not isinstance(storage, _Storage):
        raise ValueError(f"{where}: a tensor refers to {type(storage).__name__}, not a storage")
    shape, steps = _ints(size, where), _ints(stride, where)
    start = _ints((offset,), where)[0]
    if len(shape) != len(steps) or min((*shape, *steps, start), default=0) < 0:
        raise ValueError(f"{where}: bad tensor layout (size {size}, stride {stride})")
    flat = storage.data
    if 0 in shape:
        return np.zeros(shape, dtype=flat.dtype)
    last = start + sum((n - 1) * s for n, s in zip(shape, steps, strict=True))
    if last >= flat.size:
        raise ValueError(
            f"{where}: a tensor reaches element {last} of a storage of {flat.size} elements"
        )
    view = np.lib.stride_tricks.as_strided(
        flat[start:],
        shape=shape,
        strides=tuple(s * flat.itemsize for s in steps),
        writeable=False,
    )
    return np.array(view, dtype=flat.dtype.newbyteorder("="))


def _ints(values: Any, where: str) -> tuple[int, ...]:
    if not isinstance(values, tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    ):
        raise ValueError(f"{where}: expected a tuple of integers, found {values!r}")
    return values


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict into numpy arrays; refuses every other global."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, path: Path) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._path = path
        self._allowed: Mapping[tuple[str, str], Any] = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("torch._utils", "_rebuild_qtensor"): self._rebuild_qtensor,
            **{("torch", k): StorageType(f"torch.{k}", v) for k, v in _STORAGES.items()},
            **{("torch", k): v for k, v in _MARKERS.items()},
        }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise ModelError(
                f"{self._path}: refusing to load this checkpoint: its pickle names the "
                f"global {module}.{name}, which is not part of a plain state dict "
                "(nothing from it was run)"
            ) from None

    def persistent_load(self, pid: Any) -> _Storage:
        where = str(self._path)
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ValueError(f"{where}: unknown persistent reference {pid!r}")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, StorageType):
            raise ValueError(f"{where}: storage {key!r} has no known element type")
        if not (isinstance(key, str) and _STORAGE_KEY.fullmatch(key)):
            raise ValueError(f"{where}: bad storage key {key!r}")
        name = f"{self._prefix}data/{key}"
        try:
            raw = self._archive.read(name)
        except KeyError:
            raise ValueError(f"{where}: storage {name} is missing from the archive") from None
        count = _ints((numel,), where)[0]
        if len(raw) != count * kind.dtype.itemsize:
            raise ValueError(
                f"{where}: storage {name} holds {len(raw)} bytes, expected {count} "
                f"{kind.name} elements"
            )
        return _Storage(np.frombuffer(raw, dtype=kind.dtype))

    # ---- stand-ins for torch._utils ---------------------------------------------------------

    def _rebuild_tensor(
        self, storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any
    ) -> np.ndarray:
        return _strided(storage, offset, size, stride, str(self._path))

    def _rebuild_parameter(self, data: Any, *_rest: Any) -> Any:
        if not isinstance(data, np.ndarray | QuantizedArray):
            raise ValueError(f"{self._path}: a parameter wraps {type(data).__name__}")
        return data

    def _rebuild_qtensor(
        self, storage: Any, offset: Any, size: Any, stride: Any, params: Any, *_rest: Any
    ) -> QuantizedArray:
        where = str(self._path)
        values = _strided(storage, offset, size, stride, where)
        if not (isinstance(params, tuple) and params):
            raise ValueError(f"{where}: bad quantizer parameters {params!r}")
        if params[0] is _PER_TENSOR and len(params) == 3:
            scale, zero = (np.asarray(p) for p in params[1:])
            if scale.dtype.kind != "f" or zero.dtype.kind not in "iu":
                raise ValueError(f"{where}: bad per-tensor scale/zero point {params[1:]!r}")
            return QuantizedArray(values, scale, zero, None)
        if params[0] is _PER_CHANNEL and len(params) == 4:
            scale, zero, axis = params[1:]
            ok = (
                isinstance(scale, np.ndarray)
                and isinstance(zero, np.ndarray)
                and isinstance(axis, int)
                and 0 <= axis < values.ndim
                and scale.shape == zero.shape == (values.shape[axis],)
            )
            if not ok:
                raise ValueError(f"{where}: bad per-channel quantizer {params[1:]!r}")
            return QuantizedArray(values, scale, zero, axis)
        raise ValueError(f"{where}: unsupported quantization scheme {params[0]!r}")


def _data_pickle(archive: zipfile.ZipFile, path: Path) -> str:
    """The archive's one ``<name>/data.pkl``."""
    names = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
    if len(names) != 1:
        raise ModelError(
            f"{path}: not a PyTorch checkpoint archive (expected one <name>/data.pkl, "
            f"found {len(names)})"
        )
    return names[0]


def read_state_dict(path: Path) -> dict[str, Any]:
    """The state dict saved in ``path``: name -> numpy array, :class:`QuantizedArray`, or
    the tuples and markers a quantized module saves (e.g. packed linear parameters as a
    ``(weight, bias)`` tuple). Raises ``ModelError`` naming the file and the reason."""
    try:
        with zipfile.ZipFile(path) as archive:
            pkl = _data_pickle(archive, path)
            prefix = pkl[: -len("data.pkl")]
            unpickler = _RestrictedUnpickler(archive.read(pkl), archive, prefix, path)
            state = unpickler.load()
    except ModelError:
        raise
    except FileNotFoundError:
        raise ModelError(f"{path}: no such file") from None
    except zipfile.BadZipFile as exc:
        raise ModelError(
            f"{path}: not a PyTorch checkpoint (not a zip archive, or a truncated one: {exc})"
        ) from exc
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, OSError) as exc:
        raise ModelError(f"{path}: unreadable PyTorch checkpoint ({exc})") from exc
    except Exception as exc:  # a crafted pickle can make the machinery raise anything
        raise ModelError(f"{path}: unreadable PyTorch checkpoint ({exc!r})") from exc
    if not isinstance(state, Mapping):
        raise ModelError(f"{path}: expected a state dict, found {type(state).__name__}")
    return dict(state)
