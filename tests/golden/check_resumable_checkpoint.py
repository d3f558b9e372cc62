"""Checks by hand that a resumable bnlab checkpoint is a PyTorch state dict.

  build/release/bnlab train --model mlp-bn --momentum 0.9 --limit 300 --epochs 1 --save /tmp/m.safetensors
  /usr/bin/python3 tests/golden/check_resumable_checkpoint.py /tmp/m.safetensors

Reads the file with a small safetensors reader (no safetensors package
needed), loads it into mlp-bn's nn.Sequential with strict=False (the
"optimizer." keys come back as unexpected), shows that strict=True refuses
them, and loads it strictly after dropping them (docs/toolkit.md, Training
runs). Prints what happened; exits 1 if a load that should work fails.
"""
import json
import struct
import sys

import torch
import torch.nn as nn

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64}


def read_safetensors(path):
    raw = open(path, "rb").read()
    length = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + length])
    data = raw[8 + length:]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        tensors[name] = torch.frombuffer(bytearray(data[begin:end]),
                                         dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"])
    return tensors, metadata


def mlp_bn():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512, bias=False), nn.BatchNorm1d(512),
                         nn.ReLU(), nn.Linear(512, 256, bias=False), nn.BatchNorm1d(256),
                         nn.ReLU(), nn.Linear(256, 10))


def main(path):
    state, metadata = read_safetensors(path)
    model = mlp_bn()
    result = model.load_state_dict(state, strict=False)
    print("strict=False: missing", result.missing_keys, "unexpected", result.unexpected_keys)
    if result.missing_keys:
        return 1
    try:
        mlp_bn().load_state_dict(state)
        print("strict=True: accepted (no optimizer state in this file)")
    except RuntimeError as error:
        print("strict=True: refused:", str(error).splitlines()[1].strip()[:100], "...")
    mlp_bn().load_state_dict({k: v for k, v in state.items() if not k.startswith("optimizer.")})
    print("strict=True without the optimizer. keys: loaded")
    print("bnlab_resume:", sorted(json.loads(metadata["bnlab_resume"])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
