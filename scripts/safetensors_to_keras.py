#!/usr/bin/env python3
"""Build the seed program's Keras model with the weights of a kd-wgpu safetensors file.

Usage:
    kd-wgpu --save-dir runs/1
    python3 scripts/safetensors_to_keras.py runs/1/student.safetensors student.keras [--model student]

The architecture (teacher or student) comes from the file's metadata unless --model is given.
Needs keras (with TensorFlow, JAX or PyTorch), numpy and safetensors.
"""
import argparse
import sys

import keras
from keras import layers
from safetensors import safe_open
from safetensors.numpy import load_file

CHANNELS = {"teacher": (256, 512), "student": (16, 32)}
# The order of model.get_weights() for the seed's architecture.
ORDER = ["conv1.kernel", "conv1.bias", "conv2.kernel", "conv2.bias", "dense.kernel", "dense.bias"]


def build(name):
    """The seed's model, layer for layer."""
    c1, c2 = CHANNELS[name]
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(c1, (3, 3), strides=(2, 2), padding="same"),
            layers.LeakyReLU(negative_slope=0.2),
            layers.MaxPooling2D(pool_size=(2, 2), strides=(1, 1), padding="same"),
            layers.Conv2D(c2, (3, 3), strides=(2, 2), padding="same"),
            layers.Flatten(),
            layers.Dense(10),
        ],
        name=name,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", help="safetensors file written by kd-wgpu --save-dir")
    ap.add_argument("out", help="Keras model file to write (.keras)")
    ap.add_argument("--model", choices=sorted(CHANNELS), help="architecture, if the file's metadata lacks it")
    args = ap.parse_args()

    with safe_open(args.weights, framework="numpy") as f:
        metadata = f.metadata() or {}
    declared = metadata.get("architecture")
    name = args.model or declared
    if name not in CHANNELS:
        sys.exit(f"{args.weights}: architecture {declared!r} in the metadata; give --model teacher or student")
    if args.model and declared and declared != args.model:
        sys.exit(f"{args.weights} holds a {declared} model, not a {args.model}")

    tensors = load_file(args.weights)
    if sorted(tensors) != sorted(ORDER):
        sys.exit(f"{args.weights}: tensors {sorted(tensors)}, expected {ORDER}")
    model = build(name)
    # set_weights checks every shape against the model's.
    model.set_weights([tensors[n] for n in ORDER])
    model.save(args.out)
    print(f"Wrote {args.out}: {name} with the weights of {args.weights}")


if __name__ == "__main__":
    main()
