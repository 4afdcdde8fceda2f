#!/usr/bin/env python3
"""Convert a Keras model of the seed program (teacher or student) to a kd-wgpu weights file.

Usage:
    python3 scripts/keras_to_safetensors.py MODEL.keras OUT.safetensors [--config JSON]
    kd-wgpu evaluate --model student --weights OUT.safetensors

MODEL may be .keras or legacy .h5. Needs keras (with TensorFlow, JAX or PyTorch), numpy and
safetensors. The layers with weights must be Conv2D, Conv2D, Dense (channels_last), as in the
seed; their weights are stored as conv1.kernel/bias, conv2.kernel/bias, dense.kernel/bias in
Keras's own shapes, which are the shapes kd-wgpu uses.
"""
import argparse
import sys

import keras
import numpy as np
from safetensors.numpy import save_file

NAMES = ("conv1", "conv2", "dense")
KINDS = ["Conv2D", "Conv2D", "Dense"]
ARCHITECTURES = {(256, 512): "teacher", (16, 32): "student"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="Keras model file (.keras or .h5)")
    ap.add_argument("out", help="safetensors file to write")
    ap.add_argument("--config", default="{}", help="training configuration (JSON) to record in the metadata")
    args = ap.parse_args()

    model = keras.models.load_model(args.model, compile=False)
    # LeakyReLU, MaxPooling2D and Flatten have no weights; what remains must be the seed's three layers.
    weighted = [layer for layer in model.layers if layer.get_weights()]
    kinds = [type(layer).__name__ for layer in weighted]
    if kinds != KINDS:
        sys.exit(f"{args.model}: layers with weights are {kinds}, expected {KINDS}")
    for layer in weighted[:2]:
        if layer.data_format != "channels_last":
            sys.exit(f"{args.model}: layer {layer.name} is {layer.data_format}; kd-wgpu's layout is channels_last (NHWC)")

    tensors = {}
    for name, layer in zip(NAMES, weighted):
        kernel, bias = layer.get_weights()
        tensors[f"{name}.kernel"] = np.ascontiguousarray(kernel, dtype=np.float32)
        tensors[f"{name}.bias"] = np.ascontiguousarray(bias, dtype=np.float32)
    for name, value in tensors.items():
        if not np.isfinite(value).all():
            sys.exit(f"{args.model}: {name} holds non-finite values")

    c1 = tensors["conv1.kernel"].shape[3]
    c2 = tensors["conv2.kernel"].shape[3]
    metadata = {
        "architecture": ARCHITECTURES.get((c1, c2), f"conv{c1}-{c2}"),
        "conv1": str(c1),
        "conv2": str(c2),
        "config": args.config,
    }
    save_file(tensors, args.out, metadata=metadata)
    print(f"Wrote {args.out}: {metadata['architecture']} ({c1} and {c2} channels)")


if __name__ == "__main__":
    main()
