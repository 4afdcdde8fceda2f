//! Files the program writes, written so that an interrupted run never leaves a half-written
//! file and never loses the previous good one: model weights as safetensors (the layout Keras
//! users can exchange, see `scripts/`) and logits as .npy.
//!
//! A weights file holds the tensors of [`Architecture::params`] under their names (for the
//! seed's network `conv1.kernel`, `conv1.bias`, `conv2.kernel`, `conv2.bias`, `dense.kernel`,
//! `dense.bias`), f32, little-endian, in Keras's shapes: conv kernels (kh, kw, in, out), dense
//! kernels (in, out) with their inputs in NHWC flatten order. Its `__metadata__` records the
//! architecture (`layers`, the layer list as JSON; `architecture`, a label; `conv1`, `conv2`,
//! .., each convolution's filters, which is all that files from before the layer list hold)
//! and the training configuration (`config`, JSON).

use crate::model::{keras, Architecture, Layer};
use anyhow::{bail, ensure, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary file [`write_atomic`] writes before renaming it over `path`.
pub fn temp_path(path: &Path) -> Result<PathBuf> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().with_context(|| format!("{} is not a file path", path.display()))?;
    Ok(dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id())))
}

/// Refuses, before any work starts, an output file that could not be written at the end:
/// `path` must not be a directory, and a temporary file must be creatable beside it (the
/// probe is removed again).
pub fn check_writable(flag: &str, path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!("{flag} {}: is a directory; give a file path", path.display());
    }
    let tmp = temp_path(path).with_context(|| format!("{flag} {}", path.display()))?;
    std::fs::File::create(&tmp)
        .and_then(|_| std::fs::remove_file(&tmp))
        .with_context(|| format!("{flag} {}: cannot write a file there", path.display()))
}

/// The same for an output directory, which is created if needed.
pub fn check_writable_dir(flag: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{flag} {}: cannot create the directory", dir.display()))?;
    check_writable(flag, &dir.join("probe"))
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, bytes, || {})
}

/// [`write_atomic`], calling `midway` when half the bytes are in the temporary file (where
/// the tests of resumable runs kill the process).
pub fn write_atomic_with(path: &Path, bytes: &[u8], midway: impl FnOnce()) -> Result<()> {
    let tmp = temp_path(path)?;
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        let (first, second) = bytes.split_at(bytes.len() / 2);
        f.write_all(first)?;
        midway();
        f.write_all(second)?;
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

/// What a network is called in a file: the seed's two models by name, another width of the
/// seed's network by its channels (`conv8-12`), any other list `custom`.
pub fn architecture_label(arch: &Architecture) -> String {
    let channels = arch.channels();
    match channels[..] {
        [c1, c2] if Architecture::seed("", [c1, c2]).is_ok_and(|s| s.layers() == arch.layers()) => match [c1, c2] {
            crate::model::TEACHER_CHANNELS => "teacher".into(),
            crate::model::STUDENT_CHANNELS => "student".into(),
            _ => format!("conv{c1}-{c2}"),
        },
        _ => "custom".into(),
    }
}

/// For messages: the label and the convolutions' channels.
pub fn describe(arch: &Architecture) -> String {
    let channels: Vec<String> = arch.channels().iter().map(usize::to_string).collect();
    format!("{} ({} channels)", architecture_label(arch), channels.join(" and "))
}

fn metadata_channels(meta: &HashMap<String, String>) -> Result<Option<Vec<usize>>> {
    let mut channels = Vec::new();
    for i in 1.. {
        let key = format!("conv{i}");
        let Some(v) = meta.get(&key) else { break };
        channels.push(
            v.trim().parse::<usize>().with_context(|| format!("metadata `{key}` is {v:?}, not a channel count"))?,
        );
    }
    Ok((!channels.is_empty()).then_some(channels))
}

/// The network a weights file holds, from its metadata: the layer list where it records one,
/// else the seed's network with the recorded channels, else with the channels its
/// convolution kernels have (files written by other tools).
pub fn read_architecture(path: &Path) -> Result<Architecture> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read weights file {}", path.display()))?;
    architecture_of(&bytes).with_context(|| format!("weights file {}", path.display()))
}

fn architecture_of(bytes: &[u8]) -> Result<Architecture> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(invalid)?;
    let meta = header.metadata().clone().unwrap_or_default();
    let name = meta.get("architecture").cloned().unwrap_or_else(|| "model".into());
    if let Some(json) = meta.get("layers") {
        let layers: Vec<Layer> =
            serde_json::from_str(json).with_context(|| format!("metadata `layers` is not a layer list: {json}"))?;
        return Architecture::new(&name, layers);
    }
    if let Some(json) = meta.get("keras_model") {
        let layers = keras::layers_from_json(json).context("metadata `keras_model`")?;
        return Architecture::new(&name, layers);
    }
    let channels = match metadata_channels(&meta)? {
        Some(c) => c,
        None => {
            let st = SafeTensors::deserialize(bytes).map_err(invalid)?;
            let filters = |t: &str| st.tensor(t).ok().and_then(|v| v.shape().get(3).copied());
            [filters("conv1.kernel"), filters("conv2.kernel")].into_iter().flatten().collect()
        }
    };
    match channels[..] {
        [c1, c2] => Architecture::seed(&name, [c1, c2]),
        _ => bail!("neither its metadata nor its tensors say which network it holds (conv1 and conv2 channels)"),
    }
}

fn invalid(e: safetensors::SafeTensorError) -> anyhow::Error {
    anyhow::anyhow!("not a valid safetensors file (truncated or corrupt?): {e}")
}

/// Saves `flat` (the layout of `arch.params()`) as a safetensors file, atomically.
/// `config_json` is stored as the `config` metadata entry.
pub fn save(path: &Path, arch: &Architecture, flat: &[f32], config_json: &str) -> Result<()> {
    ensure!(
        flat.len() == arch.flat_len(),
        "cannot save {}: {} values given, the {} layout has {}",
        path.display(),
        flat.len(),
        arch.name(),
        arch.flat_len()
    );
    let params = arch.params();
    // Refuse to write a file that `load` would refuse.
    for p in &params {
        if let Some(i) = flat[p.range()].iter().position(|v| !v.is_finite()) {
            bail!("cannot save {}: tensor `{}` holds a non-finite value at index {i}", path.display(), p.name);
        }
    }
    let tensors: Vec<(&str, &[usize], &[f32])> =
        params.iter().map(|p| (p.name.as_str(), p.shape.as_slice(), &flat[p.range()])).collect();
    let mut metadata = BTreeMap::from([
        ("architecture".to_string(), architecture_label(arch)),
        ("layers".to_string(), serde_json::to_string(arch.layers())?),
        ("config".to_string(), config_json.to_string()),
        // For Keras: the model to build (keras.models.model_from_json) and which tensor each
        // of its weights is, in get_weights() order (scripts/safetensors_to_keras.py).
        ("keras_model".to_string(), keras::to_json(arch)),
        ("weight_order".to_string(), serde_json::to_string(&params.iter().map(|p| &p.name).collect::<Vec<_>>())?),
    ]);
    for (i, c) in arch.channels().iter().enumerate() {
        metadata.insert(format!("conv{}", i + 1), c.to_string());
    }
    write_atomic(path, &safetensors_bytes(&tensors, &metadata)?)
}

/// A safetensors file of f32 tensors `(name, shape, values)`, in the order given, with
/// `metadata`. Written here rather than by the safetensors crate, whose header order follows
/// a hash map's: the same weights must give the same bytes.
pub fn safetensors_bytes(tensors: &[(&str, &[usize], &[f32])], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(metadata)?);
    let mut offset = 0;
    for (name, shape, values) in tensors {
        ensure!(
            shape.iter().product::<usize>() == values.len(),
            "tensor `{name}`: shape {shape:?} does not hold {} values",
            values.len()
        );
        ensure!(!header.contains_key(*name), "tensor `{name}` given twice");
        let end = offset + values.len() * 4;
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut json = serde_json::to_string(&header)?;
    // The data starts 8-byte aligned, as the format asks; spaces pad the header.
    json.push_str(&" ".repeat((8 - json.len() % 8) % 8));
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    for (_, _, values) in tensors {
        // Little-endian, the byte order of every target wgpu runs on.
        for v in *values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
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
        arch.name(),
        arch.param_count() * 4
    );
    let bytes = std::fs::read(path).with_context(|| format!("cannot read weights file {}", path.display()))?;
    load_bytes(&bytes, arch).with_context(|| format!("weights file {}", path.display()))
}

/// [`load`] on the bytes of a file; errors name the tensor but not the file.
pub fn load_bytes(bytes: &[u8], arch: &Architecture) -> Result<Vec<f32>> {
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(invalid)?;
    let st = SafeTensors::deserialize(bytes).map_err(invalid)?;
    let expected = describe(arch);

    // The architecture the metadata declares, checked first: it gives the plainest message.
    if let Some(meta) = header.metadata() {
        if ["layers", "keras_model"].iter().any(|k| meta.contains_key(*k)) || metadata_channels(meta)?.is_some() {
            let held = architecture_of(bytes)?;
            if held.layers() != arch.layers() {
                bail!("this file holds a {}, but a {expected} is expected here", describe(&held));
            }
        } else if let Some(name) = meta.get("architecture") {
            if name != &architecture_label(arch) {
                bail!("this file holds a {name} model, but a {expected} is expected here");
            }
        }
    }

    let mut params = arch.params();
    // A file written from Keras (scripts/keras_to_safetensors.py) names its tensors as Keras
    // does and lists them in get_weights() order, which is the order of the parameters here.
    if let Some(order) = header.metadata().as_ref().and_then(|m| m.get("weight_order")) {
        let names: Vec<String> =
            serde_json::from_str(order).context("metadata `weight_order` is not a list of names")?;
        ensure!(
            names.len() == params.len(),
            "metadata `weight_order` lists {} tensors, but a {expected} has {}",
            names.len(),
            params.len()
        );
        params.iter_mut().zip(names).for_each(|(p, name)| p.name = name);
    }
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    for name in &names {
        if !params.iter().any(|p| p.name == *name) {
            let known: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
            bail!("unexpected tensor `{name}`; a checkpoint holds exactly {}", known.join(", "));
        }
    }
    let mut flat = vec![0f32; arch.flat_len()];
    for p in &params {
        let t = st.tensor(&p.name).map_err(|_| anyhow::anyhow!("tensor `{}` is missing", p.name))?;
        if t.dtype() != Dtype::F32 {
            bail!("tensor `{}` is {:?}, expected F32 (float32)", p.name, t.dtype());
        }
        if t.shape() != p.shape.as_slice() {
            let mut msg =
                format!("tensor `{}` has shape {:?}, expected {:?} for a {expected}", p.name, t.shape(), p.shape);
            // A conv1 kernel's last dimension is the first layer's width: name the model it fits.
            if p.name == "conv1.kernel" && t.shape().len() == 4 {
                match t.shape()[3] {
                    c if c == crate::model::STUDENT_CHANNELS[0] => msg += ": the file looks like a student model",
                    c if c == crate::model::TEACHER_CHANNELS[0] => msg += ": the file looks like a teacher model",
                    _ => {}
                }
            }
            bail!(msg);
        }
        let data = t.data();
        ensure!(data.len() == p.len() * 4, "tensor `{}` holds {} bytes, expected {}", p.name, data.len(), p.len() * 4);
        let dst = &mut flat[p.range()];
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
        assert_eq!(architecture_label(&Architecture::teacher()), "teacher");
        assert_eq!(architecture_label(&Architecture::student()), "student");
        assert_eq!(architecture_label(&Architecture::seed("s", [8, 16]).unwrap()), "conv8-16");
        let other =
            Architecture::new("x", vec![Layer::Flatten, Layer::Dense(crate::model::Dense { units: 10 })]).unwrap();
        assert_eq!(architecture_label(&other), "custom");
    }
}
