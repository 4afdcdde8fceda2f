#!/usr/bin/env python3
"""Build a Keras model with the layers and weights of a kd-wgpu safetensors file.

Usage:
    kd-wgpu --save-dir runs/1
    python3 scripts/safetensors_to_keras.py runs/1/student.safetensors student.keras

The network comes from the file's metadata: its layer list (`layers`), or for older files the
seed's network with the recorded channels (`conv1`, `conv2`); --model teacher|student says
which seed network a file without metadata holds. Weight names follow the layer list as
kd-wgpu names them: convolutions conv1, conv2, ..; dense layers dense, dense2, ..
Needs keras (with TensorFlow, JAX or PyTorch), numpy and safetensors.
"""
import argparse
import json
import sys

import keras
from keras import layers
from safetensors import safe_open
from safetensors.numpy import load_file

SEED_CHANNELS = {"teacher": (256, 512), "student": (16, 32)}


def seed_layers(c1, c2):
    """The seed program's layer list with c1 and c2 filters, as kd-wgpu records it."""
    return [
        {"Conv2D": {"filters": c1, "kernel": 3, "stride": 2}},
        {"LeakyReLU": {"slope": 0.2}},
        {"MaxPooling2D": {"size": 2, "stride": 1}},
        {"Conv2D": {"filters": c2, "kernel": 3, "stride": 2}},
        "Flatten",
        {"Dense": {"units": 10}},
    ]


def keras_layer(entry):
    """One Keras layer and the prefix of its weights' names (None without weights)."""
    if entry == "Flatten":
        return layers.Flatten(), "flatten"
    (kind, a), = entry.items()
    if kind == "Conv2D":
        k, s = a["kernel"], a["stride"]
        return layers.Conv2D(a["filters"], (k, k), strides=(s, s), padding="same"), "conv"
    if kind == "LeakyReLU":
        return layers.LeakyReLU(negative_slope=a["slope"]), None
    if kind == "MaxPooling2D":
        k, s = a["size"], a["stride"]
        return layers.MaxPooling2D(pool_size=(k, k), strides=(s, s), padding="same"), None
    if kind == "Dense":
        return layers.Dense(a["units"]), "dense"
    sys.exit(f"unknown layer {entry!r}")


def build(name, layer_list):
    """The model, layer for layer, and its weight names in the order of get_weights()."""
    model_layers, names, counts = [keras.Input(shape=(28, 28, 1))], [], {"conv": 0, "dense": 0}
    for entry in layer_list:
        layer, kind = keras_layer(entry)
        model_layers.append(layer)
        if kind in counts:
            counts[kind] += 1
            n = counts[kind]
            prefix = f"conv{n}" if kind == "conv" else ("dense" if n == 1 else f"dense{n}")
            names += [f"{prefix}.kernel", f"{prefix}.bias"]
    return keras.Sequential(model_layers, name=name), names


def declared_layers(path, metadata, model):
    if model:
        return model, seed_layers(*SEED_CHANNELS[model])
    name = metadata.get("architecture", "model")
    if "layers" in metadata:
        return name, json.loads(metadata["layers"])
    if "conv1" in metadata and "conv2" in metadata:
        return name, seed_layers(int(metadata["conv1"]), int(metadata["conv2"]))
    sys.exit(f"{path}: the metadata does not say which network this is; give --model teacher or student")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", help="safetensors file written by kd-wgpu --save-dir")
    ap.add_argument("out", help="Keras model file to write (.keras)")
    ap.add_argument("--model", choices=sorted(SEED_CHANNELS), help="the seed network a file without metadata holds")
    args = ap.parse_args()

    with safe_open(args.weights, framework="numpy") as f:
        metadata = f.metadata() or {}
    declared = metadata.get("architecture")
    if args.model and declared and declared != args.model:
        sys.exit(f"{args.weights} holds a {declared} model, not a {args.model}")
    name, layer_list = declared_layers(args.weights, metadata, args.model)

    tensors = load_file(args.weights)
    model, order = build(name, layer_list)
    if sorted(tensors) != sorted(order):
        sys.exit(f"{args.weights}: tensors {sorted(tensors)}, expected {order}")
    # set_weights checks every shape against the model's.
    model.set_weights([tensors[n] for n in order])
    model.save(args.out)
    print(f"Wrote {args.out}: {name} with the weights of {args.weights}")


if __name__ == "__main__":
    main()
