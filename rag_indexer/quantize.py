"""`python -m rag_indexer.quantize SOURCE DEST`: the int8 query graph, made in a process of its own.

onnxruntime's dynamic quantization of the optimised float graph: MatMul weights int8 per output channel in
7 bits (`reduce_range`: no int16 saturation on CPUs without VNNI), activations quantized per run. A child
process because it takes seconds of CPU and ~400 MB that a serving gateway should not hold (its GIL, its
memory), and the tools log on the root logger (one line per tensor) where the gateway's handlers would print it.
"""

from __future__ import annotations

import sys

TAG = "int8-s8pc7"  # what the settings below make: part of the saved graph's folder name


def main(argv: list[str]) -> int:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source, dest = argv
    quantize_dynamic(source, dest, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
