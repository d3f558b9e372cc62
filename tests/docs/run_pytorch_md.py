#!/usr/bin/python3
"""Runs the snippets of docs/pytorch.md as a reader would, in order.

Usage: run_pytorch_md.py DOC BNLAB

The ```python blocks run in one Python session (one namespace), the ```sh
blocks line by line with `bnlab` replaced by the BNLAB executable, all in a
fresh folder. Exit 77 (CTest's SKIP_RETURN_CODE) when torch cannot be
imported or Fashion-MNIST (which the bnlab commands read) is not installed;
blocks importing the safetensors package are skipped when it is missing.
"""
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import tempfile

SKIP = 77
DATA = "/usr/share/datasets/fashion-mnist"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    doc, bnlab = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    if importlib.util.find_spec("torch") is None:
        print("skipped: torch cannot be imported")
        return SKIP
    if not os.path.isdir(DATA):
        print(f"skipped: {DATA} is missing (the bnlab commands read it)")
        return SKIP
    have_safetensors = importlib.util.find_spec("safetensors") is not None
    with open(doc) as f:
        blocks = re.findall(r"```(python|sh)\n(.*?)```", f.read(), re.S)
    namespace = {"__name__": "__doc_snippets__"}
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        for number, (language, code) in enumerate(blocks, 1):
            where = f"{doc}, block {number} ({language})"
            if language == "python":
                if "from safetensors" in code and not have_safetensors:
                    print(f"{where}: skipped (no safetensors package)")
                    continue
                exec(compile(code, where, "exec"), namespace)
                print(f"{where}: ran")
                continue
            for line in filter(str.strip, code.splitlines()):
                words = shlex.split(line)
                if words[0] != "bnlab":
                    sys.exit(f"{where}: a shell line must start with bnlab: {line}")
                run = subprocess.run([bnlab] + words[1:], capture_output=True, text=True)
                if run.returncode != 0:
                    sys.exit(f"{where}: `{line}` exited {run.returncode}:\n{run.stderr}")
                print(f"{where}: {line}\n{run.stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
