"""`python -m rag_indexer.quantize FLOAT_GRAPH_DIR DEST`: the int8 query graph, made in a process of its own.

onnxruntime's dynamic quantization of the optimised float graph: MatMul weights int8 per output channel in
7 bits (`reduce_range`: no int16 saturation on CPUs without VNNI), activations quantized per run. A child
process because it takes seconds of CPU and ~400 MB that a serving gateway should not hold (its GIL, its
memory), and the tools log on the root logger (one line per tensor) where the gateway's handlers would print it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

OPTIONS = {"per_channel": True, "reduce_range": True}  # with QInt8 weights
TAG = "int8-s8" + "".join(tag for key, tag in (("per_channel", "pc"), ("reduce_range", "7")) if OPTIONS[key])


def main(argv: list[str]) -> int:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, dest = Path(argv[0]), Path(argv[1])
    # its shape inference writes beside its input: a private copy (onnx refuses hard-linked weights), so that
    # processes quantizing the same graph at once never share that file
    with tempfile.TemporaryDirectory(dir=dest.parent) as private:
        for file in source.iterdir():
            shutil.copy2(file, Path(private) / file.name)
        quantize_dynamic(Path(private) / "model.onnx", dest, weight_type=QuantType.QInt8, **OPTIONS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
