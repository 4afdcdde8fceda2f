//! The weight files a run starts from (`--teacher`, `--teacher-init`, `--student-init`) and
//! saves to (`--save-dir`).

use crate::checkpoint;
use crate::config::WeightFiles;
use crate::gpu::Gpu;
use crate::model::Architecture;
use crate::train::Model;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// Where `--save-dir` puts weight files, and the configuration they record.
pub struct WeightSaver {
    pub dir: Option<PathBuf>,
    pub config_json: String,
}

impl WeightSaver {
    pub fn save(&self, gpu: &Gpu, file: &str, model: &Model) -> Result<()> {
        if let Some(dir) = &self.dir {
            let path = dir.join(file);
            checkpoint::save(&path, &model.arch, &model.read_flat(gpu)?, &self.config_json)?;
            println!("Saved {}", path.display());
        }
        Ok(())
    }
}

/// The weights named by [`WeightFiles`], loaded and checked against the configured networks.
pub struct StartingWeights {
    pub teacher: Option<Vec<f32>>,
    pub teacher_init: Option<Vec<f32>>,
    pub student_init: Option<Vec<f32>>,
}

impl StartingWeights {
    /// Loads every given weight file, so that a bad one is refused before any training.
    pub fn load(files: &WeightFiles, teacher: &Architecture, student: &Architecture) -> Result<StartingWeights> {
        if files.teacher.is_some() && files.teacher_init.is_some() {
            bail!(
                "--teacher (a trained teacher, not trained again) and --teacher-init (a starting point for \
                 training) exclude each other"
            );
        }
        let load = |flag: &str, path: &Option<PathBuf>, arch: &Architecture| -> Result<Option<Vec<f32>>> {
            path.as_deref()
                .map(|p| checkpoint::load(p, arch).with_context(|| format!("{flag} {}", p.display())))
                .transpose()
        };
        let weights = StartingWeights {
            teacher: load("--teacher", &files.teacher, teacher)?,
            teacher_init: load("--teacher-init", &files.teacher_init, teacher)?,
            student_init: load("--student-init", &files.student_init, student)?,
        };
        if let Some(dir) = &files.save_dir {
            checkpoint::check_writable_dir("--save-dir", dir)?;
        }
        Ok(weights)
    }
}
