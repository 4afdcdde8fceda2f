#!/usr/bin/env bash
# Packs into .gpu/ (ignored by git) what scripts/gpu-check.sh runs on a GPU machine that has
# no Rust toolchain and no network: the release binary and the test executables whose tests
# run kernels on the device, stripped, and the four Fashion-MNIST files.
#
#   scripts/gpu-pack.sh      then carry `.gpu` (and the Vulkan loader's `.gl`, see docs/speed.md)
set -euo pipefail
cd "$(dirname "$0")/.."
pack=.gpu
rm -rf "$pack"
mkdir -p "$pack/tests" "$pack/data"

cargo build --release --quiet
strip -o "$pack/kd-wgpu" target/release/kd-wgpu
# The executables of the tests that run kernels, whole steps and every tuned entry on the device.
cargo test --release --no-run --message-format=json --quiet 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"] \
            and m["target"]["name"] in ("kernels", "whole_step", "tuning"):
        print(m["target"]["name"], m["executable"])
' | while read -r name exe; do strip -o "$pack/tests/$name" "$exe"; done

found=""
for dir in "${KD_DATA_DIR:-}" data/fashion-mnist "$HOME/.keras/datasets/fashion-mnist" /usr/share/datasets/fashion-mnist; do
    if [ -n "$dir" ] && [ -f "$dir/train-images-idx3-ubyte.gz" ]; then found=$dir; break; fi
done
[ -n "$found" ] || { echo "no Fashion-MNIST .gz files found (apt-get install dataset-fashion-mnist)" >&2; exit 1; }
cp "$found"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "$pack/data/"
du -sh "$pack"; ls -l "$pack" "$pack"/tests "$pack"/data
