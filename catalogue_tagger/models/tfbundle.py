"""Read TensorFlow tensor-bundle checkpoints (``.index`` + ``.data-NNNNN-of-NNNNN``) without TensorFlow.

The pretrained taggers ship as TF1 checkpoints. Installing TensorFlow to read ~8 MB of weights once would
pin a huge dependency on the product, so this module reads the format directly:

- ``.index`` is an SSTable in LevelDB's table format: a 48-byte footer points at the index block, whose
  entries point at data blocks; every block holds prefix-compressed key/value entries followed by a restart
  array and a 5-byte trailer (compression byte + crc). Keys are tensor names, values are serialized
  ``BundleEntryProto`` messages; the empty key holds the ``BundleHeaderProto``.
- ``.data-*`` shards hold the raw little-endian tensor bytes at ``(offset, size)``.

Protobuf messages are decoded by hand: only varints, fixed32/64 and length-delimited fields occur.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catalogue_tagger.errors import ModelError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5
NO_COMPRESSION = 0
SNAPPY_COMPRESSION = 1

# tensorflow/core/framework/types.proto -> numpy (little-endian)
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}


class CheckpointFormatError(ModelError):
    """The checkpoint is not a readable TensorFlow tensor bundle."""

    kind = "checkpoint_format_error"


@dataclass(frozen=True)
class BundleEntry:
    """Where one tensor lives in the data shards (a decoded ``BundleEntryProto``)."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int


# --- protobuf wire format ----------------------------------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield ``(field_number, value)``: ints for varint/fixed fields, bytes for length-delimited ones."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, value
        elif wire == 1:
            yield number, struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            yield number, buf[pos : pos + length]
            pos += length
        elif wire == 5:
            yield number, struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise CheckpointFormatError(f"unsupported protobuf wire type {wire}")


def _shape(buf: bytes) -> tuple[int, ...]:
    """Decode a ``TensorShapeProto``: repeated ``Dim dim = 2`` with ``int64 size = 1``."""
    dims: list[int] = []
    for number, value in _fields(buf):
        if number == 2 and isinstance(value, bytes):
            size = 0
            for dim_number, dim_value in _fields(value):
                if dim_number == 1 and isinstance(dim_value, int):
                    size = dim_value
            dims.append(size)
        elif number == 3 and value:
            raise CheckpointFormatError("tensor of unknown rank")
    return tuple(dims)


def _entry(name: str, buf: bytes) -> BundleEntry:
    """Decode a ``BundleEntryProto``: dtype=1, shape=2, shard_id=3, offset=4, size=5, crc32c=6, slices=7."""
    ints = {1: 0, 3: 0, 4: 0, 5: 0, 6: 0}
    shape: tuple[int, ...] = ()
    for number, value in _fields(buf):
        if number == 2 and isinstance(value, bytes):
            shape = _shape(value)
        elif number == 7:
            raise CheckpointFormatError(f"{name}: partitioned (sliced) tensors are not supported")
        elif number in ints and isinstance(value, int):
            ints[number] = value
    return BundleEntry(
        name=name, dtype=ints[1], shape=shape, shard_id=ints[3], offset=ints[4], size=ints[5], crc32c=ints[6]
    )


# --- LevelDB table format --------------------------------------------------------------------------
def snappy_decompress(buf: bytes) -> bytes:
    """Decode a raw snappy block (preamble length, then literal and copy elements)."""
    length, pos = _varint(buf, 0)
    out = bytearray()
    while pos < len(buf):
        tag = buf[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            n = tag >> 2
            if n >= 60:
                extra = n - 59
                n = int.from_bytes(buf[pos : pos + extra], "little")
                pos += extra
            n += 1
            out += buf[pos : pos + n]
            pos += n
            continue
        if kind == 1:
            n = 4 + ((tag >> 2) & 7)
            offset = ((tag >> 5) << 8) | buf[pos]
            pos += 1
        elif kind == 2:
            n = (tag >> 2) + 1
            offset = int.from_bytes(buf[pos : pos + 2], "little")
            pos += 2
        else:
            n = (tag >> 2) + 1
            offset = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise CheckpointFormatError("corrupt snappy block")
        for _ in range(n):  # byte by byte: copies may overlap their own output
            out.append(out[-offset])
    if len(out) != length:
        raise CheckpointFormatError("snappy block has the wrong length")
    return bytes(out)


def _block_handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def _read_block(table: bytes, offset: int, size: int) -> bytes:
    if offset + size + BLOCK_TRAILER_SIZE > len(table):
        raise CheckpointFormatError("block handle points past the end of the index")
    contents = table[offset : offset + size]
    compression = table[offset + size]
    if compression == NO_COMPRESSION:
        return contents
    if compression == SNAPPY_COMPRESSION:
        return snappy_decompress(contents)
    raise CheckpointFormatError(f"unsupported block compression {compression}")


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield the key/value pairs of one block, undoing the prefix compression of the keys."""
    if len(block) < 4:
        raise CheckpointFormatError("block too short")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


def table_entries(table: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield every key/value pair of an SSTable, in key order."""
    if len(table) < FOOTER_SIZE:
        raise CheckpointFormatError("index file too short for a table footer")
    footer = table[-FOOTER_SIZE:]
    if struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)[0] != TABLE_MAGIC:
        raise CheckpointFormatError("bad table magic: not a tensor-bundle .index file")
    _, _, pos = _block_handle(footer)  # metaindex: unused by tensor bundles
    index_offset, index_size, _ = _block_handle(footer, pos)
    for _, handle in _block_entries(_read_block(table, index_offset, index_size)):
        offset, size, _ = _block_handle(handle)
        yield from _block_entries(_read_block(table, offset, size))


# --- bundle ----------------------------------------------------------------------------------------
def read_index(index: bytes) -> list[BundleEntry]:
    """Decode the entries of a ``.index`` file; the header (empty key) is checked and dropped."""
    entries: list[BundleEntry] = []
    for key, value in table_entries(index):
        if key == b"":
            for number, field in _fields(value):
                if number == 2 and field != 0:  # endianness: 0 = LITTLE
                    raise CheckpointFormatError("big-endian checkpoints are not supported")
            continue
        entries.append(_entry(key.decode("utf-8"), value))
    return entries


def read_bundle(
    index: bytes,
    shard: Callable[[int], bytes] | Sequence[bytes],
    include: Callable[[str], bool] = lambda name: True,
) -> dict[str, np.ndarray]:
    """Return ``{name: array}`` for every tensor whose name passes ``include``.

    ``shard`` gives the bytes of data shard ``i`` (a list, or a function so callers can read lazily).
    """
    get = shard if callable(shard) else shard.__getitem__
    shards: dict[int, bytes] = {}
    tensors: dict[str, np.ndarray] = {}
    for entry in read_index(index):
        if not include(entry.name):
            continue
        dtype = DTYPES.get(entry.dtype)
        if dtype is None:
            raise CheckpointFormatError(f"{entry.name}: unsupported dtype {entry.dtype}")
        count = int(np.prod(entry.shape, dtype=np.int64))
        if count * dtype.itemsize != entry.size:
            raise CheckpointFormatError(f"{entry.name}: size {entry.size} does not match shape {entry.shape}")
        if entry.shard_id not in shards:
            shards[entry.shard_id] = get(entry.shard_id)
        data = shards[entry.shard_id]
        if entry.offset + entry.size > len(data):
            raise CheckpointFormatError(f"{entry.name}: data lies past the end of shard {entry.shard_id}")
        array = np.frombuffer(data, dtype=dtype, count=count, offset=entry.offset)
        tensors[entry.name] = array.reshape(entry.shape).astype(dtype.newbyteorder("="), copy=True)
    return tensors


def num_shards(index: bytes) -> int:
    """The number of data shards, from the bundle header (the table's first entry, under the empty key)."""
    for key, value in table_entries(index):
        if key == b"":
            return next((v for n, v in _fields(value) if n == 1 and isinstance(v, int)), 1)
        break
    raise CheckpointFormatError("the index has no bundle header")


def shard_suffix(shard_id: int, n_shards: int) -> str:
    """``.data-00000-of-00001``: the file name suffix of a data shard."""
    return f".data-{shard_id:05d}-of-{n_shards:05d}"


def read_checkpoint(prefix: str | Path, include: Callable[[str], bool] = lambda name: True) -> dict[str, np.ndarray]:
    """Read the checkpoint whose files are ``<prefix>.index`` and ``<prefix>.data-*-of-*``."""
    prefix = str(prefix)
    index = Path(prefix + ".index").read_bytes()
    n = num_shards(index)
    return read_bundle(index, lambda i: Path(prefix + shard_suffix(i, n)).read_bytes(), include)


def is_optimizer_slot(name: str) -> bool:
    """Adam slots and power accumulators: training state that inference never reads."""
    leaf = name.rsplit("/", 1)[-1]
    return leaf in ("Adam", "Adam_1") or name in ("beta1_power", "beta2_power", "global_step")
