//! Files the program writes, written so that an interrupted run never leaves a half-written
//! file and never loses the previous good one: model weights as safetensors (the layout Keras
//! users can exchange, see `scripts/`) and logits as .npy.
//!
//! A weights file holds the six tensors of [`Architecture::params`] under their names
//! (`conv1.kernel`, `conv1.bias`, `conv2.kernel`, `conv2.bias`, `dense.kernel`, `dense.bias`),
//! f32, little-endian, in Keras's shapes: conv kernels (kh, kw, in, out), the dense kernel
//! (in, out) with its inputs in NHWC flatten order. Its `__metadata__` records the
//! architecture (`architecture`, `conv1`, `conv2`) and the training configuration (`config`, JSON).

use crate::model::Architecture;
use anyhow::{bail, ensure, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary file [`write_atomic`] writes before renaming it over `path`.
pub fn temp_path(path: &Path) -> Result<PathBuf> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().with_context(|| format!("{} is not a file path", path.display()))?;
    Ok(dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id())))
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path)?;
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("could not write {}", path.display()))?;
    // The rename is durable only once the directory entry is; a failure here loses nothing.
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// What a pair of channel counts is called: the seed's two models, or the counts themselves.
pub fn architecture_label(conv1: usize, conv2: usize) -> String {
    match (conv1, conv2) {
        (256, 512) => "teacher".into(),
        (16, 32) => "student".into(),
        _ => format!("conv{conv1}-{conv2}"),
    }
}

fn describe(conv1: usize, conv2: usize) -> String {
    format!("{} ({conv1} and {conv2} channels)", architecture_label(conv1, conv2))
}

/// Saves `flat` (the layout of `arch.params()`) as a safetensors file, atomically.
/// `config_json` is stored as the `config` metadata entry.
pub fn save(path: &Path, arch: &Architecture, flat: &[f32], config_json: &str) -> Result<()> {
    ensure!(
        flat.len() == arch.flat_len(),
        "cannot save {}: {} values given, the {} layout has {}",
        path.display(),
        flat.len(),
        arch.name,
        arch.flat_len()
    );
    let params = arch.params();
    // Refuse to write a file that `load` would refuse.
    for p in &params {
        if let Some(i) = flat[p.offset..p.offset + p.len()].iter().position(|v| !v.is_finite()) {
            bail!("cannot save {}: tensor `{}` holds a non-finite value at index {i}", path.display(), p.name);
        }
    }
    let views = params
        .iter()
        .map(|p| {
            // safetensors stores little-endian, the byte order of every target wgpu runs on.
            let bytes: &[u8] = bytemuck::cast_slice(&flat[p.offset..p.offset + p.len()]);
            Ok((p.name, safetensors::tensor::TensorView::new(Dtype::F32, p.shape.clone(), bytes)?))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .with_context(|| format!("cannot save {}", path.display()))?;
    let metadata = HashMap::from([
        ("architecture".to_string(), architecture_label(arch.conv1, arch.conv2)),
        ("conv1".to_string(), arch.conv1.to_string()),
        ("conv2".to_string(), arch.conv2.to_string()),
        ("config".to_string(), config_json.to_string()),
    ]);
    let bytes =
        safetensors::serialize(views, Some(metadata)).with_context(|| format!("cannot save {}", path.display()))?;
    write_atomic(path, &bytes)
}

/// Loads a weights file written by [`save`] or by `scripts/keras_to_safetensors.py` into the
/// flat layout of `arch` (alignment padding zero). Every refusal names the file, and the
/// tensor where one is at fault.
pub fn load(path: &Path, arch: &Architecture) -> Result<Vec<f32>> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read weights file {}", path.display()))?;
    // Weights plus a generous header: anything far larger is not a checkpoint of this model.
    let limit = (arch.param_count() * 4 + (16 << 20)) as u64;
    ensure!(
        meta.len() <= limit,
        "{} is {} bytes, far more than a {} checkpoint ({} bytes of weights)",
        path.display(),
        meta.len(),
        arch.name,
        arch.param_count() * 4
    );
    let bytes = std::fs::read(path).with_context(|| format!("cannot read weights file {}", path.display()))?;
    load_bytes(&bytes, arch).with_context(|| format!("weights file {}", path.display()))
}

/// [`load`] on the bytes of a file; errors name the tensor but not the file.
pub fn load_bytes(bytes: &[u8], arch: &Architecture) -> Result<Vec<f32>> {
    let invalid =
        |e: safetensors::SafeTensorError| anyhow::anyhow!("not a valid safetensors file (truncated or corrupt?): {e}");
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(invalid)?;
    let st = SafeTensors::deserialize(bytes).map_err(invalid)?;
    let expected = describe(arch.conv1, arch.conv2);

    // The architecture the metadata declares, checked first: it gives the plainest message.
    if let Some(meta) = header.metadata() {
        let channels = |key: &str| -> Result<Option<usize>> {
            meta.get(key)
                .map(|v| {
                    v.trim().parse::<usize>().with_context(|| format!("metadata `{key}` is {v:?}, not a channel count"))
                })
                .transpose()
        };
        if let (Some(c1), Some(c2)) = (channels("conv1")?, channels("conv2")?) {
            if (c1, c2) != (arch.conv1, arch.conv2) {
                bail!("this file holds a {}, but a {expected} is expected here", describe(c1, c2));
            }
        } else if let Some(name) = meta.get("architecture") {
            if name != &architecture_label(arch.conv1, arch.conv2) {
                bail!("this file holds a {name} model, but a {expected} is expected here");
            }
        }
    }

    let params = arch.params();
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    for name in &names {
        if !params.iter().any(|p| p.name == *name) {
            let known: Vec<&str> = params.iter().map(|p| p.name).collect();
            bail!("unexpected tensor `{name}`; a checkpoint holds exactly {}", known.join(", "));
        }
    }
    let mut flat = vec![0f32; arch.flat_len()];
    for p in &params {
        let t = st.tensor(p.name).map_err(|_| anyhow::anyhow!("tensor `{}` is missing", p.name))?;
        if t.dtype() != Dtype::F32 {
            bail!("tensor `{}` is {:?}, expected F32 (float32)", p.name, t.dtype());
        }
        if t.shape() != p.shape.as_slice() {
            let mut msg =
                format!("tensor `{}` has shape {:?}, expected {:?} for a {expected}", p.name, t.shape(), p.shape);
            // A conv1 kernel's last dimension is the first layer's width: name the model it fits.
            if p.name == "conv1.kernel" && t.shape().len() == 4 {
                match t.shape()[3] {
                    16 => msg += ": the file looks like a student model",
                    256 => msg += ": the file looks like a teacher model",
                    _ => {}
                }
            }
            bail!(msg);
        }
        let data = t.data();
        ensure!(data.len() == p.len() * 4, "tensor `{}` holds {} bytes, expected {}", p.name, data.len(), p.len() * 4);
        let dst = &mut flat[p.offset..p.offset + p.len()];
        for (i, (d, b)) in dst.iter_mut().zip(data.chunks_exact(4)).enumerate() {
            let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if !v.is_finite() {
                bail!("tensor `{}` holds {v} at index {i}: the weights are not finite", p.name);
            }
            *d = v;
        }
    }
    Ok(flat)
}

/// A float32 array in NumPy's .npy format (version 1.0, C order) with the given shape.
pub fn npy_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    ensure!(shape.iter().product::<usize>() == data.len(), "npy: shape {shape:?} does not hold {} values", data.len());
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple
    // of 64 bytes and ending in a newline.
    let total = (10 + header.len() + 1).next_multiple_of(64);
    header += &" ".repeat(total - 10 - header.len() - 1);
    header.push('\n');
    let header_len = u16::try_from(header.len()).context("npy header too long")?;
    let mut out = Vec::with_capacity(total + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{STUDENT, TEACHER};

    #[test]
    fn npy_header_is_aligned_and_describes_the_array() {
        let bytes = npy_f32(&[3, 10], &[1.5; 30]).unwrap();
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hlen) % 64, 0);
        assert_eq!(bytes.len(), 10 + hlen + 30 * 4);
        let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 10), }"));
        assert!(header.ends_with('\n'));
        assert_eq!(&bytes[10 + hlen..10 + hlen + 4], &1.5f32.to_le_bytes());
        assert!(npy_f32(&[2, 2], &[0.0; 3]).is_err());
    }

    #[test]
    fn labels_name_the_seed_models() {
        assert_eq!(architecture_label(TEACHER.conv1, TEACHER.conv2), "teacher");
        assert_eq!(architecture_label(STUDENT.conv1, STUDENT.conv2), "student");
        assert_eq!(architecture_label(8, 16), "conv8-16");
    }
}
