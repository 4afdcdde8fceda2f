#!/usr/bin/env python3
"""Build a Keras model with the layers and weights of a kd-wgpu safetensors file.

Usage:
    kd-wgpu --save-dir runs/1
    python3 scripts/safetensors_to_keras.py runs/1/student.safetensors student.keras

The network is the Keras model the file records (`keras_model`, written by kd-wgpu from its
layer list, or by scripts/keras_to_safetensors.py), and its weights are the tensors listed in
get_weights() order (`weight_order`). Files written before kd-wgpu recorded them hold the
seed's network with the channels in `conv1` and `conv2`: give --keras-model with the seed's
file (models/seed-teacher.json or models/seed-student.json) for those.
Needs keras (with TensorFlow, JAX or PyTorch), numpy and safetensors.
"""
import argparse
import json
import sys

import keras
from safetensors import safe_open
from safetensors.numpy import load_file


def load(weights, keras_model=None):
    """The Keras model a kd-wgpu weights file holds, with its weights; `keras_model` is the
    path of a model.to_json() file for files that do not record theirs."""
    with safe_open(weights, framework="numpy") as f:
        metadata = f.metadata() or {}
    tensors = load_file(weights)
    if keras_model:
        with open(keras_model) as f:
            text = f.read()
    elif "keras_model" in metadata:
        text = metadata["keras_model"]
    else:
        sys.exit(f"{weights} does not record its Keras model (an older file); give --keras-model FILE.json")
    model = keras.models.model_from_json(text)
    if "weight_order" in metadata:
        order = json.loads(metadata["weight_order"])
    else:
        # kd-wgpu's names: conv1, conv2, .., then dense, dense2, .., each kernel then bias.
        order = sorted(tensors, key=lambda n: (not n.startswith("conv"), n.split(".")[0], n.endswith(".bias")))
    if len(order) != len(model.weights) or sorted(order) != sorted(tensors):
        sys.exit(f"{weights}: tensors {sorted(tensors)} do not fit the model's {len(model.weights)} weights")
    # set_weights checks every shape against the model's.
    model.set_weights([tensors[n] for n in order])
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", help="safetensors file written by kd-wgpu --save-dir")
    ap.add_argument("out", help="Keras model file to write (.keras)")
    ap.add_argument("--keras-model", help="the network as model.to_json() writes it, for files that do not record one")
    args = ap.parse_args()
    model = load(args.weights, args.keras_model)
    model.save(args.out)
    print(f"Wrote {args.out}: {model.name} with the weights of {args.weights}")


if __name__ == "__main__":
    main()
