#!/usr/bin/env python3
"""Convert a Keras Sequential model to a kd-wgpu weights file.

Usage:
    python3 scripts/keras_to_safetensors.py MODEL.keras OUT.safetensors [--config JSON]
    kd-wgpu evaluate --weights OUT.safetensors

MODEL may be .keras or legacy .h5. Its layers must be of the kinds kd-wgpu runs, as the seed
program's are: Conv2D (square kernel, equal strides, padding "same", channels_last, no
activation), LeakyReLU, MaxPooling2D (padding "same"), Flatten and Dense (no activation), on
28 x 28 x 1 images. The file records the layer list in its metadata (`layers`) and the weights
under kd-wgpu's names (conv1.kernel, conv1.bias, ..; dense.kernel, ..) in Keras's own shapes,
which are the shapes kd-wgpu uses. Needs keras (with TensorFlow, JAX or PyTorch), numpy and
safetensors.
"""
import argparse
import json
import os
import sys

import keras
import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_to_keras import seed_layers  # noqa: E402


def square(pair, what, layer):
    if pair[0] != pair[1]:
        sys.exit(f"layer {layer.name}: {what} {pair} is not square; kd-wgpu's layers are")
    return int(pair[0])


def entry(layer):
    """kd-wgpu's description of one Keras layer, as in the file's `layers` metadata."""
    kind = type(layer).__name__
    config = layer.get_config()
    if kind == "Conv2D":
        if config["padding"] != "same" or config["data_format"] != "channels_last":
            sys.exit(f"layer {layer.name}: kd-wgpu's Conv2D is padding 'same', channels_last")
        if config["activation"] != "linear" or config["dilation_rate"] != (1, 1) or config["groups"] != 1:
            sys.exit(f"layer {layer.name}: an activation, dilation or groups are not supported; use a LeakyReLU layer")
        k = square(config["kernel_size"], "kernel", layer)
        return {"Conv2D": {"filters": int(config["filters"]), "kernel": k, "stride": square(config["strides"], "strides", layer)}}
    if kind == "LeakyReLU":
        return {"LeakyReLU": {"slope": float(config["negative_slope"])}}
    if kind == "MaxPooling2D":
        if config["padding"] != "same":
            sys.exit(f"layer {layer.name}: kd-wgpu's MaxPooling2D is padding 'same'")
        size = square(config["pool_size"], "pool size", layer)
        return {"MaxPooling2D": {"size": size, "stride": square(config["strides"], "strides", layer)}}
    if kind == "Flatten":
        return "Flatten"
    if kind == "Dense":
        if config["activation"] != "linear":
            sys.exit(f"layer {layer.name}: kd-wgpu's Dense has no activation (logits)")
        return {"Dense": {"units": int(config["units"])}}
    sys.exit(f"layer {layer.name}: kd-wgpu has no {kind} layer")


def label(layer_list):
    """What kd-wgpu calls the network: the seed's two by name, other widths of it by channels."""
    convs = [e["Conv2D"]["filters"] for e in layer_list if isinstance(e, dict) and "Conv2D" in e]
    if len(convs) == 2 and layer_list == seed_layers(*convs):
        return {(256, 512): "teacher", (16, 32): "student"}.get(tuple(convs), f"conv{convs[0]}-{convs[1]}")
    return "custom"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="Keras model file (.keras or .h5)")
    ap.add_argument("out", help="safetensors file to write")
    ap.add_argument("--config", default="{}", help="training configuration (JSON) to record in the metadata")
    args = ap.parse_args()

    model = keras.models.load_model(args.model, compile=False)
    layer_list, tensors, counts = [], {}, {"Conv2D": 0, "Dense": 0}
    for layer in model.layers:
        e = entry(layer)
        layer_list.append(e)
        kind = e if isinstance(e, str) else next(iter(e))
        if kind in counts:
            counts[kind] += 1
            n = counts[kind]
            prefix = f"conv{n}" if kind == "Conv2D" else ("dense" if n == 1 else f"dense{n}")
            kernel, bias = layer.get_weights()
            tensors[f"{prefix}.kernel"] = np.ascontiguousarray(kernel, dtype=np.float32)
            tensors[f"{prefix}.bias"] = np.ascontiguousarray(bias, dtype=np.float32)
    for name, value in tensors.items():
        if not np.isfinite(value).all():
            sys.exit(f"{args.model}: {name} holds non-finite values")

    metadata = {"architecture": label(layer_list), "layers": json.dumps(layer_list), "config": args.config}
    for i, e in enumerate(x for x in layer_list if isinstance(x, dict) and "Conv2D" in x):
        metadata[f"conv{i + 1}"] = str(e["Conv2D"]["filters"])
    save_file(tensors, args.out, metadata=metadata)
    print(f"Wrote {args.out}: {metadata['architecture']} ({len(layer_list)} layers)")


if __name__ == "__main__":
    main()
