#!/usr/bin/env python3
"""Convert a Keras Sequential model to a kd-wgpu weights file.

Usage:
    python3 scripts/keras_to_safetensors.py MODEL.keras OUT.safetensors [--config JSON]
    kd-wgpu evaluate --weights OUT.safetensors

MODEL may be .keras or legacy .h5. The file records the model as Keras writes it
(`keras_model`, the JSON of model.to_json()) and its weights under Keras's own names, listed
in get_weights() order (`weight_order`). kd-wgpu reads the layer list from that JSON, as
--teacher-layers and --student-layers do, and refuses a layer or option it does not compute as
Keras does, naming it. Needs keras (with TensorFlow, JAX or PyTorch), numpy and safetensors.
"""
import argparse
import json
import sys

import keras
import numpy as np
from safetensors.numpy import save_file


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="Keras model file (.keras or .h5)")
    ap.add_argument("out", help="safetensors file to write")
    ap.add_argument("--config", default="{}", help="training configuration (JSON) to record in the metadata")
    args = ap.parse_args()

    model = keras.models.load_model(args.model, compile=False)
    if not isinstance(model, keras.Sequential):
        sys.exit(f"{args.model}: a {type(model).__name__} model; kd-wgpu reads Sequential models")
    tensors, order = {}, []
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight), dtype=np.float32)
        if not np.isfinite(value).all():
            sys.exit(f"{args.model}: {weight.path} holds non-finite values")
        tensors[weight.path] = value
        order.append(weight.path)

    metadata = {
        "architecture": model.name,
        "keras_model": model.to_json(),
        "weight_order": json.dumps(order),
        "config": args.config,
    }
    save_file(tensors, args.out, metadata=metadata)
    print(f"Wrote {args.out}: {model.name} ({len(model.layers)} layers, {len(order)} tensors)")


if __name__ == "__main__":
    main()
