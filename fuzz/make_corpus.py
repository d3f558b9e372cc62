#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets to fuzz/corpus/<target>/:
a few valid inputs and a few invalid ones per target, small, deterministic.
Run by hand after changing a target's input format: /usr/bin/python3 fuzz/make_corpus.py"""
import gzip
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# ---- safetensors: u64 header length, JSON header, data ----------------------
def safetensors(header, data=b"", pad=b" ", length=None):
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    text += pad * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text) if length is None else length) + text + data


one_f32 = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
write("safetensors", "one_f32", safetensors(one_f32, struct.pack("<2f", 1.5, -2.0)))
write("safetensors", "empty", safetensors({}))
write("safetensors", "metadata", safetensors(
    {"__metadata__": {"arch": "Linear(2, 1)", "framework": "pt"},
     "0.weight": {"dtype": "F32", "shape": [1, 2], "data_offsets": [0, 8]},
     "0.bias": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}},
    struct.pack("<3f", 0.5, 0.25, 0.0)))
dtypes = [("F64", 8), ("I64", 8), ("F32", 4), ("I32", 4), ("F16", 2), ("BF16", 2), ("I16", 2),
          ("I8", 1), ("U8", 1), ("BOOL", 1)]
header, offset = {}, 0
for name, size in dtypes:
    header[name.lower()] = {"dtype": name, "shape": [2], "data_offsets": [offset, offset + 2 * size]}
    offset += 2 * size
write("safetensors", "dtypes", safetensors(header, bytes(range(offset))))
write("safetensors", "scalar_and_empty", safetensors(
    {"s": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]},
     "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [8, 8]}}, struct.pack("<q", 7)))
write("safetensors", "bad_json", safetensors(b'{"w": {"dtype": "F32",'))
write("safetensors", "overlap", safetensors(
    {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
     "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8)))
write("safetensors", "past_end", safetensors(one_f32, bytes(4)))
write("safetensors", "nested", safetensors(b'{"w":' + b"[" * 80 + b"]" * 80 + b"}"))
write("safetensors", "bom", safetensors(b"\xef\xbb\xbf" + json.dumps(one_f32).encode(), bytes(8)))
write("safetensors", "nul_padded", safetensors(b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
                                               bytes(8), pad=b"\0"))
write("safetensors", "length_absurd", safetensors(one_f32, bytes(8), length=1 << 40))


# ---- IDX: byte 0 mode (bit 0 gzip images, bit 1 gzip labels, bits 4-7 bytes
# cut from the compressed images), byte 1 labels length, labels, images ------
def idx_images(n, rows, cols, magic=0x803):
    return struct.pack(">IIII", magic, n, rows, cols) + bytes((i * 37) % 256 for i in range(n * rows * cols))


def idx_labels(labels, magic=0x801):
    return struct.pack(">II", magic, len(labels)) + bytes(labels)


def idx_input(mode, labels, images):
    assert len(labels) < 256
    return bytes([mode, len(labels)]) + labels + images


write("idx", "plain", idx_input(0, idx_labels([1, 2, 3]), idx_images(3, 4, 4)))
write("idx", "gzip_both", idx_input(3, idx_labels([9, 0]), idx_images(2, 5, 3)))
write("idx", "gzip_images_cut_4", idx_input(1 | (4 << 4), idx_labels([1]), idx_images(1, 8, 8)))
write("idx", "gzip_large", idx_input(1, idx_labels([5] * 10), idx_images(10, 28, 28)))
write("idx", "truncated_plain", idx_input(0, idx_labels([1, 2]), idx_images(2, 4, 4)[:-3]))
write("idx", "too_long", idx_input(0, idx_labels([1]), idx_images(1, 2, 2) + b"xx"))
write("idx", "wrong_magic", idx_input(0, idx_images(1, 2, 2), idx_labels([1])))
write("idx", "label_out_of_range", idx_input(0, idx_labels([10]), idx_images(1, 2, 2)))
write("idx", "count_mismatch", idx_input(0, idx_labels([1, 1]), idx_images(3, 2, 2)))
write("idx", "huge_header", idx_input(0, idx_labels([1]), struct.pack(">IIII", 0x803, 0xFFFFFFFF, 28, 28)))
# A gzip file stored as is (mode 0): the reader detects it by content.
write("idx", "raw_gzip_file", idx_input(0, idx_labels([4]), gzip.compress(idx_images(1, 3, 3), mtime=0)))

# ---- arch: PyTorch's notation ----------------------------------------------
write("arch", "mlp", "Flatten(), Linear(784, 512), ReLU(), Linear(512, 256), ReLU(), Linear(256, 10)")
write("arch", "mlp_bn", "Flatten(), Linear(784, 512, bias=False), BatchNorm1d(512), ReLU(), Linear(512, 10)")
write("arch", "cnn_bn", "Conv2d(1, 8, 3, padding=1, bias=False), BatchNorm2d(8), ReLU(), MaxPool2d(2), "
                        "Conv2d(8, 16, kernel_size=3, stride=2), BatchNorm2d(16, momentum=None), ReLU(), "
                        "Flatten(), Linear(576, 10)")
write("arch", "keywords", "nn.Flatten(), nn.Linear(784, 10), nn.BatchNorm1d(10, eps=1e-3, affine=False, "
                          "track_running_stats=False), nn.LeakyReLU(negative_slope=0.01), nn.Dropout(p=0.5), "
                          "nn.Sigmoid(), nn.Tanh()")
write("arch", "bn3d", "BatchNorm3d(1, momentum=0.3)")
write("arch", "unknown_layer", "Flatten(), Linaer(784, 10)")
write("arch", "bad_keyword", "Linear(784, 10, bais=False)")
write("arch", "unbalanced", "Flatten(), Linear(784, 10")
write("arch", "shape_mismatch", "Flatten(), Linear(10, 10)")
write("arch", "nested_parens", "Linear(((784)), 10)")
write("arch", "arithmetic", "Flatten(), Linear(28*28, (64 - 4) // 3 + 2*5), ReLU(), Linear(30, 10 // 1)")
write("arch", "torch_repr", "Sequential(\n  (0): Flatten(start_dim=1, end_dim=-1)\n"
                            "  (1): Linear(in_features=784, out_features=10, bias=True)\n)")
write("arch", "tuples_strings", "torch.nn.Conv2d(1, 4, (3, 3), stride=(1, 1), padding='same'), "
                                "MaxPool2d(kernel_size=2, stride=2), Flatten(), Linear(784, 10)")


# ---- C API: FuzzedDataProvider bytes; any bytes are a valid input -----------
write("capi", "zeros", bytes(64))
write("capi", "ones", b"\x01" * 96)
write("capi", "ramp", bytes(range(256)))
write("capi", "ff", b"\xff" * 64)
write("capi", "threads", b"\x03" + struct.pack("<i", 100000)[::-1] + bytes(8))
