#!/usr/bin/python3
"""State-dict interop goldens for tests/nn/state_dict_test.cpp, both ways.

Run by hand with Debian's PyTorch (/usr/bin/python3; no `safetensors` package
exists here: the minimal writer and reader of make_safetensors_goldens.py,
json + struct, do the files):

1. PyTorch -> bnlab:
       /usr/bin/python3 tests/golden/make_state_dict_goldens.py
   For each case in CASES it builds the nn.Sequential from the architecture
   text (the text is PyTorch's own notation, so eval() builds it), seeds the
   weights, trains 3 SGD steps so the running statistics and
   num_batches_tracked move, and writes into tests/golden/state_dict/:
     pytorch_<case>.safetensors     model.state_dict() (F32, num_batches_tracked
                                    I64 of shape []), metadata {"arch", "format": "pt"}
     pytorch_<case>_io.safetensors  "input" (a small batch) and "output", the
                                    model's eval-mode output for it
   and, for the tiny CNN, the same state dict in F16 and BF16
   (model.half()/bfloat16(): num_batches_tracked stays I64) with the output of
   the model whose weights went through that rounding ("output_f16",
   "output_bf16" in the _io file). The test loads each state dict into bnlab's
   network parsed from the same text and compares outputs (1e-4).

2. bnlab -> PyTorch:
       BNLAB_WRITE_STATE_DICT_GOLDENS=tests/golden/state_dict \\
           build/<dir>/tests/nn/bnlab_nn_tests --gtest_filter='StateDict.BnlabCheckpoint*'
       /usr/bin/python3 tests/golden/make_state_dict_goldens.py --from-bnlab
   The first command makes the test write, for each case, bnlab_<case>.safetensors
   (bnlab's save_checkpoint after a few training-mode forwards) and
   bnlab_<case>_io.safetensors ("input" and bnlab's eval "output"). The second
   loads each checkpoint with torch's load_state_dict(strict=True) into the
   nn.Sequential built from the checkpoint's own "arch" metadata, checks that
   PyTorch's eval output matches bnlab's (1e-4, it exits 1 otherwise) and
   writes pytorch_from_bnlab_<case>.safetensors ("output": what PyTorch
   computed). The test then checks bnlab against PyTorch's numbers on every run.

   --check FILE [IO_FILE] does the same for any bnlab checkpoint (IO_FILE,
   optional, holding "input" and bnlab's "output") and prints what it found.
"""
import copy
import os
import sys

import torch
from torch import nn

# The minimal safetensors writer and reader (json + struct) of the io goldens,
# whose writer lays files out as bnlab's does.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_safetensors_goldens import load_safetensors, save_safetensors  # noqa: E402

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "state_dict")

# Small networks (the presets' weights are megabytes): an MLP with BN after a
# bias-free Linear, a tiny CNN with BatchNorm2d, stride and both bias settings,
# and BatchNorm's variants whose state-dict keys differ (affine=False has no
# weight/bias, track_running_stats=False no running statistics at all).
CASES = {
    "mlp_bn": ("Flatten(), Linear(784, 16, bias=False), BatchNorm1d(16), ReLU(), Linear(16, 10)",
               (4, 1, 28, 28)),
    "cnn_bn": ("Conv2d(1, 4, 3, padding=1, bias=False), BatchNorm2d(4), ReLU(), MaxPool2d(2), "
               "Conv2d(4, 8, 3, stride=2, padding=1), BatchNorm2d(8), ReLU(), Flatten(), "
               "Linear(392, 10)",
               (4, 1, 28, 28)),
    "bn_variants": ("Flatten(), Linear(12, 6), BatchNorm1d(6, affine=False), LeakyReLU(0.2), "
                    "Linear(6, 5, bias=False), BatchNorm1d(5, eps=1e-3, momentum=None), Tanh(), "
                    "Dropout(0.3), Linear(5, 4), BatchNorm1d(4, track_running_stats=False), "
                    "Sigmoid()",
                    (6, 3, 4)),
}
TOLERANCE = 1e-4



def build(arch):
    """nn.Sequential from bnlab's arch text: it is PyTorch's notation already."""
    return eval("nn.Sequential(" + arch + ")", {"nn": nn, **vars(nn)})


def trained_model(name, arch, input_shape):
    """The case's network after 3 SGD steps on random batches (seeded)."""
    torch.manual_seed(sum(map(ord, name)))
    model = build(arch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    classes = [m for m in model if isinstance(m, nn.Linear)][-1].out_features
    model.train()
    for _ in range(3):
        x = torch.rand(16, *input_shape[1:])
        y = torch.randint(0, classes, (16,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def eval_output(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def write_pytorch_goldens():
    os.makedirs(OUT_DIR, exist_ok=True)
    for name, (arch, input_shape) in CASES.items():
        model = trained_model(name, arch, input_shape)
        state = model.state_dict()
        metadata = {"arch": arch, "format": "pt"}
        save_safetensors(os.path.join(OUT_DIR, f"pytorch_{name}.safetensors"), state, metadata)
        torch.manual_seed(1000 + sum(map(ord, name)))
        x = torch.rand(*input_shape)
        io = {"input": x, "output": eval_output(model, x)}
        if name == "cnn_bn":
            # Half-precision state dicts: bnlab converts to F32 on load, so its
            # output equals that of the model whose weights went through the rounding.
            for suffix, dtype in (("f16", torch.float16), ("bf16", torch.bfloat16)):
                low = copy.deepcopy(model).to(dtype)
                save_safetensors(os.path.join(OUT_DIR, f"pytorch_{name}_{suffix}.safetensors"),
                                 low.state_dict(), metadata)
                io["output_" + suffix] = eval_output(low.float(), x)
        save_safetensors(os.path.join(OUT_DIR, f"pytorch_{name}_io.safetensors"), io)
        print(f"wrote pytorch_{name}: {len(state)} entries, keys {list(state)}")


def check_bnlab_file(path, io_path=None):
    """Loads a bnlab checkpoint into PyTorch strictly; returns PyTorch's eval
    output for the io file's input (and compares it with bnlab's output)."""
    tensors, metadata = load_safetensors(path)
    arch = metadata.get("arch")
    if not arch:
        sys.exit(f"{path}: no 'arch' in __metadata__ (not a bnlab checkpoint?)")
    model = build(arch)
    model.load_state_dict(tensors, strict=True)  # raises on a missing/unexpected key or shape
    print(f"{path}: loaded strictly into {arch}")
    if io_path is None:
        return None
    io, _ = load_safetensors(io_path)
    output = eval_output(model, io["input"])
    difference = (output - io["output"]).abs().max().item()
    print(f"  max |PyTorch - bnlab| = {difference:.3g}")
    if not difference <= TOLERANCE:
        sys.exit(f"{path}: PyTorch's output differs from bnlab's by {difference}")
    return output


def write_from_bnlab_goldens():
    for name in CASES:
        path = os.path.join(OUT_DIR, f"bnlab_{name}.safetensors")
        output = check_bnlab_file(path, os.path.join(OUT_DIR, f"bnlab_{name}_io.safetensors"))
        save_safetensors(os.path.join(OUT_DIR, f"pytorch_from_bnlab_{name}.safetensors"),
                         {"output": output}, {"torch": torch.__version__, "strict": "True"})


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--check":
        check_bnlab_file(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    elif len(sys.argv) == 2 and sys.argv[1] == "--from-bnlab":
        write_from_bnlab_goldens()
    elif len(sys.argv) == 1:
        write_pytorch_goldens()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
