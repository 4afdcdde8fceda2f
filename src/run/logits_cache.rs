//! The frozen teacher's logits tables, kept between runs: a run that distils from the same
//! teacher weights, on the same images, device and kernel family, reads them instead of
//! running the teacher over every image again (minutes on a CPU driver, for each regime of an
//! experiment). The file is named by the SHA-256 of all of that, so a table is only read
//! where it would be computed to the same bits; a file that cannot be read costs a warning
//! and the tables are computed again.

use crate::checkpoint;
use crate::data::{Dataset, NUM_CLASSES};
use crate::gpu::{self, Gpu};
use crate::model::Architecture;
use anyhow::{ensure, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Raised when what the file holds changes, so that older files are never read.
const FORMAT: &str = "kd-wgpu teacher logits 1";

/// One teacher's tables on one device: where they are kept.
pub struct LogitsCache {
    pub path: PathBuf,
    rows: (usize, usize),
}

impl LogitsCache {
    /// The cache file in `dir` for `teacher` (its network and flat weights) over `data`'s
    /// training and test images, computed on `gpu`.
    pub fn new(dir: &Path, teacher: (&Architecture, &[f32]), data: &Dataset, gpu: &Gpu) -> Result<LogitsCache> {
        let mut h = crate::digest::Hasher::new();
        h.update(FORMAT);
        h.update(serde_json::to_vec(teacher.0)?);
        h.update(bytemuck::cast_slice::<f32, u8>(teacher.1));
        for split in [&data.train, &data.test] {
            h.update((split.len() as u64).to_le_bytes());
            h.update(&split.images);
        }
        // The bits depend on the device and the kernel family, not on the tuner's choices.
        h.update(gpu::describe(&gpu.info));
        h.update(format!("{:?}", gpu.family()));
        let name = h.short_hex(12);
        Ok(LogitsCache {
            path: dir.join(format!("logits-{name}.safetensors")),
            rows: (data.train.len(), data.test.len()),
        })
    }

    /// The default place: `$XDG_CACHE_HOME/kd-wgpu` (`~/.cache/kd-wgpu`), beside the tuning cache.
    pub fn default_dir() -> Option<PathBuf> {
        dirs::cache_dir().map(|d| d.join("kd-wgpu"))
    }

    /// The training and test tables, if the file is there; a file that is there but cannot be
    /// used is reported and left to be rewritten.
    pub fn read(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        let bytes = std::fs::read(&self.path).ok()?;
        match self.parse(&bytes) {
            Ok(tables) => Some(tables),
            Err(e) => {
                eprintln!("warning: ignoring the teacher's logits cache {}: {e:#}", self.path.display());
                None
            }
        }
    }

    fn parse(&self, bytes: &[u8]) -> Result<(Vec<f32>, Vec<f32>)> {
        let st = SafeTensors::deserialize(bytes).context("not a valid safetensors file (truncated or corrupt?)")?;
        let table = |name: &str, rows: usize| -> Result<Vec<f32>> {
            let t = st.tensor(name).with_context(|| format!("it has no tensor `{name}`"))?;
            ensure!(
                t.dtype() == Dtype::F32 && t.shape() == [rows, NUM_CLASSES],
                "tensor `{name}` is {:?} {:?}, not F32 [{rows}, {NUM_CLASSES}]",
                t.dtype(),
                t.shape()
            );
            let values: Vec<f32> =
                t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            ensure!(values.iter().all(|v| v.is_finite()), "tensor `{name}` holds a non-finite value");
            Ok(values)
        };
        Ok((table("train", self.rows.0)?, table("test", self.rows.1)?))
    }

    /// Keeps the tables for later runs (atomically); a failure costs a warning, not the run.
    pub fn write(&self, train: &[f32], test: &[f32]) {
        if let Err(e) = self.try_write(train, test) {
            eprintln!("warning: could not keep the teacher's logits in {}: {e:#}", self.path.display());
        }
    }

    fn try_write(&self, train: &[f32], test: &[f32]) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tensors: [(&str, &[usize], &[f32]); 2] =
            [("train", &[self.rows.0, NUM_CLASSES], train), ("test", &[self.rows.1, NUM_CLASSES], test)];
        let metadata = BTreeMap::from([("format".to_string(), FORMAT.to_string())]);
        checkpoint::write_atomic(&self.path, &checkpoint::safetensors_bytes(&tensors, &metadata)?)
    }
}
