//! Fashion-MNIST loading.
//!
//! The data set is the four IDX files `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each either gzipped (`NAME.gz`) or
//! already unpacked (`NAME`); when both forms exist the `.gz` one is read.
//!
//! Where [`load`] looks:
//!
//! 1. With `--data-dir DIR` ([`LoadOptions::data_dir`]): only `DIR`. A file missing or broken
//!    there is an error; nothing else is searched and nothing is downloaded.
//! 2. Otherwise the first directory of [`search_dirs`] that holds all four files, in this order:
//!    `$KD_DATA_DIR` (if set), `./data/fashion-mnist`, `~/.keras/datasets/fashion-mnist`
//!    (the Keras cache), `/usr/share/datasets/fashion-mnist` (Debian/Ubuntu's
//!    `dataset-fashion-mnist` package).
//! 3. If none has them and `--offline` is not given: the missing `.gz` files are downloaded from
//!    [`UPSTREAM_URL`] into `$KD_DATA_DIR` if set, else `~/.keras/datasets/fashion-mnist`. Each
//!    download is streamed into `NAME.gz.part`, synced, checked against the SHA-256 and size of
//!    its decompressed content, and only then renamed to `NAME.gz`, so an interrupted or bad
//!    download never leaves a file that a later run would trust.
//!
//! Files found on disk are not hash-checked (the Debian package is recompressed, and it is
//! authoritative); they are fully validated as IDX files instead.

mod download;
mod idx;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

pub use download::UPSTREAM_URL;
use download::{download_missing, DownloadError, Expected, EXPECTED};
use idx::{check_images, check_labels, read_decompressed, IMAGES_HEADER, LABELS_HEADER};
pub use idx::{parse_images, parse_labels};

pub const IMAGE_SIDE: usize = 28;
pub const NUM_CLASSES: usize = 10;
/// Fashion-MNIST's classes, by label.
pub const CLASS_NAMES: [&str; NUM_CLASSES] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

const IMAGE_BYTES: usize = IMAGE_SIDE * IMAGE_SIDE;

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
const FILE_NAMES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// One split: raw pixel bytes (N*28*28, row-major, NHWC with C=1) and labels (N, each 0..=9).
#[derive(Clone, PartialEq, Eq)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Keeps the first `n` samples (all of them if there are fewer).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.images.truncate(n * IMAGE_BYTES);
    }
}

// Printing megabytes of pixels is never useful.
impl std::fmt::Debug for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Split").field("len", &self.len()).finish()
    }
}

#[derive(Clone, Debug)]
pub struct Dataset {
    pub train: Split,
    pub test: Split,
    /// Directory the files came from.
    pub source: PathBuf,
}

/// Where the data set is read from: the flags `--data-dir` and `--offline`, and what the
/// program sets itself.
#[derive(Clone, Debug, clap::Args)]
pub struct LoadOptions {
    /// Directory holding the four Fashion-MNIST IDX files (.gz or unpacked); the only place
    /// looked in when given (never falls back, never downloads).
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Never download the data set.
    #[arg(long, global = true)]
    pub offline: bool,
    /// Where the `.gz` files are downloaded from; must end in `/` or have one appended.
    #[arg(skip = UPSTREAM_URL.to_string())]
    pub base_url: String,
    /// Show progress bars while downloading.
    #[arg(skip)]
    pub progress: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { data_dir: None, offline: false, base_url: UPSTREAM_URL.to_string(), progress: false }
    }
}

/// Loads Fashion-MNIST; see the module documentation for where it looks and when it downloads.
pub fn load(opts: &LoadOptions) -> Result<Dataset> {
    load_from(opts, &search_dirs(), default_download_dir().as_deref(), &EXPECTED)
}

/// Directories searched for the data when no `--data-dir` is given, in order:
/// `$KD_DATA_DIR` (if set), `./data/fashion-mnist`, `~/.keras/datasets/fashion-mnist`,
/// `/usr/share/datasets/fashion-mnist`.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = env_data_dir() {
        dirs.push(dir);
    }
    let local = Path::new("data").join("fashion-mnist");
    // Absolute, so that error messages say exactly where was looked.
    dirs.push(std::env::current_dir().map(|cwd| cwd.join(&local)).unwrap_or(local));
    if let Some(keras) = keras_cache_dir() {
        dirs.push(keras);
    }
    dirs.push(PathBuf::from(DEBIAN_DIR));
    dirs
}

fn env_data_dir() -> Option<PathBuf> {
    std::env::var_os("KD_DATA_DIR").filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn keras_cache_dir() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE")).filter(|v| !v.is_empty())?;
    Some(PathBuf::from(home).join(".keras").join("datasets").join("fashion-mnist"))
}

fn default_download_dir() -> Option<PathBuf> {
    env_data_dir().or_else(keras_cache_dir)
}

/// The core of [`load`], with its environment-dependent inputs passed in so that it can be
/// tested: the directories to search, where to download (None: nowhere known), and the
/// checksum table that downloads are verified against.
fn load_from(
    opts: &LoadOptions,
    search: &[PathBuf],
    download_dir: Option<&Path>,
    expected: &[Expected],
) -> Result<Dataset> {
    if let Some(dir) = &opts.data_dir {
        if !dir.is_dir() {
            bail!(
                "--data-dir {}: no such directory (with --data-dir nothing else is searched and \
                 nothing is downloaded)",
                dir.display()
            );
        }
        let missing = missing_files(dir);
        if !missing.is_empty() {
            let list: Vec<String> =
                missing.iter().map(|name| format!("{name} (neither {name}.gz nor {name})")).collect();
            bail!(
                "--data-dir {}: missing {} (with --data-dir nothing else is searched and nothing \
                 is downloaded)",
                dir.display(),
                list.join(", ")
            );
        }
        return read_dataset(dir);
    }

    if let Some(dir) = search.iter().find(|dir| missing_files(dir).is_empty()) {
        return read_dataset(dir);
    }

    let failure = if opts.offline {
        "Downloading is forbidden by --offline.".to_string()
    } else {
        match download_dir {
            None => "Cannot download: no download directory (set KD_DATA_DIR or HOME).".to_string(),
            Some(dir) => match download_missing(opts, dir, expected) {
                Ok(()) => return read_dataset(dir),
                Err(DownloadError { url, reason }) => {
                    let mut text = format!("Downloading into {} failed.", dir.display());
                    if let Some(url) = url {
                        text.push_str(&format!("\n  URL tried: {url}"));
                    }
                    text.push_str(&format!("\n  Reason: {reason:#}"));
                    text
                }
            },
        }
    };
    Err(anyhow!(not_found_message(search, &failure)))
}

fn not_found_message(search: &[PathBuf], failure: &str) -> String {
    let mut text = String::from("Fashion-MNIST not found. Looked in:\n");
    for dir in search {
        text.push_str(&format!("  {}: {}\n", dir.display(), describe_dir(dir)));
    }
    text.push_str(failure);
    text.push_str(&format!(
        "\nAlternatives:\n  - Debian/Ubuntu: `apt-get install dataset-fashion-mnist` (the files \
         land in {DEBIAN_DIR}, which is searched)\n  - `--data-dir DIR`, a directory holding the \
         four files {} (each gzipped as NAME.gz or unpacked)",
        FILE_NAMES.join(", ")
    ));
    text
}

fn describe_dir(dir: &Path) -> String {
    if !dir.is_dir() {
        return "no such directory".to_string();
    }
    let missing = missing_files(dir);
    if missing.is_empty() {
        "all four files present".to_string()
    } else {
        format!("missing {}", missing.join(", "))
    }
}

/// `dir/NAME.gz` if present, else `dir/NAME` if present.
fn locate(dir: &Path, name: &str) -> Option<PathBuf> {
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Some(gz);
    }
    let raw = dir.join(name);
    raw.is_file().then_some(raw)
}

fn missing_files(dir: &Path) -> Vec<&'static str> {
    FILE_NAMES.iter().copied().filter(|name| locate(dir, name).is_none()).collect()
}

fn read_dataset(dir: &Path) -> Result<Dataset> {
    Ok(Dataset {
        train: read_split(dir, "train", TRAIN_IMAGES, TRAIN_LABELS)?,
        test: read_split(dir, "test", TEST_IMAGES, TEST_LABELS)?,
        source: dir.to_path_buf(),
    })
}

fn read_split(dir: &Path, split: &str, images_name: &str, labels_name: &str) -> Result<Split> {
    let find = |name: &str| locate(dir, name).ok_or_else(|| anyhow!("{}: missing {name}(.gz)", dir.display()));
    let images_path = find(images_name)?;
    let labels_path = find(labels_name)?;

    let mut images = read_decompressed(&images_path)?;
    let count = check_images(&images_path.display().to_string(), &images)?;
    // Drop the header in place rather than copying tens of megabytes.
    images.drain(..IMAGES_HEADER);

    let mut labels = read_decompressed(&labels_path)?;
    check_labels(&labels_path.display().to_string(), &labels)?;
    labels.drain(..LABELS_HEADER);

    if count != labels.len() {
        bail!(
            "{split} split: {} holds {count} images but {} holds {} labels",
            images_path.display(),
            labels_path.display(),
            labels.len()
        );
    }
    Ok(Split { images, labels })
}
