"""What every Scripts/make_reference*.py shares: drawing float32 values, writing tensors and
fixture files. Imported by those scripts (run them from the repository root)."""

import json
import os
import re

import torch

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "BackpropTests", "Fixtures")


def f32(shape, gen, scale=1.0):
    """A float32 N(0, scale²) sample, returned as a float64 tensor holding exactly those values."""
    return (torch.randn(*shape, generator=gen, dtype=torch.float32) * scale).to(torch.float64)


def tensor_json(t):
    """{"shape", "data"} with the float32 rounding of `t`, each written as its shortest decimal."""
    a = t.detach().to(torch.float32).numpy()
    return {"shape": list(a.shape), "data": [float(str(v)) for v in a.ravel()]}


def leaf(t):
    return t.clone().requires_grad_(True)


def dump(path, header, cases):
    """Writes {"header", "cases"} as JSON; returns the file's size."""
    text = json.dumps({"header": header, "cases": cases}, indent=1)
    # One line per number (or boolean) list keeps the files small and the diffs readable.
    text = re.sub(r"\[\s*([-0-9.eE+,\s]*?)\s*\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]", text)
    text = re.sub(r"\[\s*((?:true|false)(?:,\s*(?:true|false))*)\s*\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]", text)
    with open(path, "w") as f:
        f.write(text + "\n")
    return os.path.getsize(path)
