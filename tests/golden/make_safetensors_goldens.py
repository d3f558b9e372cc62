#!/usr/bin/python3
"""Writes the safetensors goldens that tests/io/safetensors_test.cpp reads.

Run by hand with Debian's PyTorch (no `safetensors` package exists here):
    /usr/bin/python3 tests/golden/make_safetensors_goldens.py
    /usr/bin/python3 tests/golden/make_safetensors_goldens.py --check FILE
The second form reads FILE (e.g. a checkpoint bnlab wrote) with the minimal
reader below and prints each tensor as torch sees it; `load_safetensors` can
be imported by other scripts to feed a bnlab file to `load_state_dict`.

It writes, into tests/golden/safetensors/:
  mlp_bn_state.safetensors  the state dict of a small nn.Sequential with
                            BatchNorm1d after a few training steps (F32
                            weights and running statistics, I64
                            num_batches_tracked), with "__metadata__"
  dtypes.safetensors        one small tensor of every dtype bnlab knows,
                            plus a scalar and an empty tensor
  <name>.json               for each file: the metadata and, for each
                            tensor, its dtype, shape and values (flat,
                            row-major) as torch sees them

The writer below is a minimal one of our own that follows the reference
implementation's layout (huggingface/safetensors, safetensors/src/tensor.rs):
tensors sorted by descending dtype alignment rank, then by name; compact JSON
header with "__metadata__" first; header padded with spaces to a multiple of
8 bytes; little-endian data. bnlab's writer must reproduce these files byte
for byte.
"""
import json
import os
import struct
import sys

import torch

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "safetensors")

# dtype -> (safetensors name, rank in the reference Dtype enum, which orders by alignment)
DTYPES = {
    torch.bool: ("BOOL", 0),
    torch.uint8: ("U8", 1),
    torch.int8: ("I8", 2),
    torch.int16: ("I16", 5),
    torch.float16: ("F16", 7),
    torch.bfloat16: ("BF16", 8),
    torch.int32: ("I32", 9),
    torch.float32: ("F32", 11),
    torch.float64: ("F64", 12),
    torch.int64: ("I64", 13),
}


def tensor_bytes(t):
    """Raw little-endian bytes of a contiguous CPU tensor (x86 is little-endian)."""
    t = t.detach().contiguous()
    if t.dtype in (torch.float16, torch.bfloat16):
        # numpy has no bfloat16: reinterpret the 16-bit patterns as int16.
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def save_safetensors(path, tensors, metadata=None):
    """A minimal safetensors writer (see the module docstring for the layout)."""
    items = sorted(tensors.items(), key=lambda kv: (-DTYPES[kv[1].dtype][1], kv[0].encode()))
    header = {}
    if metadata:
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    offset = 0
    blobs = []
    for name, t in items:
        data = tensor_bytes(t)
        header[name] = {
            "dtype": DTYPES[t.dtype][0],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


def load_safetensors(path):
    """A minimal safetensors reader: {name: tensor}, and the metadata."""
    by_name = {name: dtype for dtype, (name, _) in DTYPES.items()}
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        data = f.read()
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = by_name[info["dtype"]]
        raw = bytearray(data[begin:end])
        if dtype in (torch.float16, torch.bfloat16):
            t = torch.frombuffer(raw, dtype=torch.int16).view(dtype) if raw else torch.empty(0, dtype=dtype)
        else:
            t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors, metadata


def values_of(t):
    """Flat values as JSON numbers: floats exactly (float64 holds every
    F16/BF16/F32 value), integers and bools as integers."""
    flat = t.detach().reshape(-1)
    if t.dtype.is_floating_point:
        return [float(v) for v in flat.double().tolist()]
    return [int(v) for v in flat.long().tolist()]


def save_dump(path, tensors, metadata):
    dump = {"__metadata__": metadata or {}, "tensors": {}}
    for name, t in tensors.items():
        dump["tensors"][name] = {
            "dtype": DTYPES[t.dtype][0],
            "shape": list(t.shape),
            "values": values_of(t),
        }
    with open(path, "w") as f:
        json.dump(dump, f, indent=1)
        f.write("\n")


def mlp_bn_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(6, 5, bias=False),
        torch.nn.BatchNorm1d(5),
        torch.nn.ReLU(),
        torch.nn.Linear(5, 3),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # Three training steps: running statistics, weights and
    # num_batches_tracked all move away from their initial values.
    for _ in range(3):
        x = torch.randn(8, 2, 3)
        y = torch.randint(0, 3, (8,))
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    arch = ("Flatten(), Linear(6, 5, bias=False), BatchNorm1d(5), ReLU(), Linear(5, 3)")
    return model.state_dict(), {"arch": arch, "format": "pt"}


def dtypes_state():
    torch.manual_seed(1)
    return {
        "f64": torch.randn(2, 3, dtype=torch.float64),
        "f32": torch.randn(3),
        "f16": torch.tensor([1.0, -2.5, 65504.0, 6.1035e-05], dtype=torch.float16),
        "bf16": torch.tensor([1.0, -3.140625, 1e30, -1e-30], dtype=torch.bfloat16),
        "i64": torch.tensor([-(2 ** 62), 7, 2 ** 40], dtype=torch.int64),
        "i32": torch.tensor([[-5, 6], [2 ** 30, -(2 ** 31)]], dtype=torch.int32),
        "i16": torch.tensor([-32768, 32767, 1], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 17], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 4),
    }, None


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        tensors, metadata = load_safetensors(sys.argv[2])
        print("metadata:", metadata)
        for name, t in tensors.items():
            print(name, t.dtype, tuple(t.shape), t.reshape(-1)[:4].tolist())
        return
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, make in (("mlp_bn_state", mlp_bn_state), ("dtypes", dtypes_state)):
        tensors, metadata = make()
        save_safetensors(os.path.join(OUT_DIR, name + ".safetensors"), tensors, metadata)
        save_dump(os.path.join(OUT_DIR, name + ".json"), tensors, metadata)
        print("wrote", name, "with", len(tensors), "tensors")


if __name__ == "__main__":
    main()
