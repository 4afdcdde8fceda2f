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

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use flate2::read::MultiGzDecoder;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

pub const IMAGE_SIDE: usize = 28;
pub const NUM_CLASSES: usize = 10;
/// Fashion-MNIST's classes, by label.
pub const CLASS_NAMES: [&str; NUM_CLASSES] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
pub const UPSTREAM_URL: &str = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/";

const IMAGE_BYTES: usize = IMAGE_SIDE * IMAGE_SIDE;
const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const IMAGES_HEADER: usize = 16;
const LABELS_HEADER: usize = 8;

const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
const FILE_NAMES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// (file name, SHA-256 of the decompressed file as lower-case hex, decompressed size in bytes).
type Expected<'a> = (&'a str, &'a str, u64);

/// Checksums of the decompressed files. Upstream only publishes MD5s of its `.gz` files, and
/// other mirrors recompress, so the decompressed content is what is compared.
const EXPECTED: [Expected<'static>; 4] = [
    (TRAIN_IMAGES, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47_040_016),
    (TRAIN_LABELS, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60_008),
    (TEST_IMAGES, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7_840_016),
    (TEST_LABELS, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10_008),
];

/// Upper bound on any file, compressed or not: the real ones are under 50 MB, and the bound
/// keeps a corrupt or hostile gzip stream from exhausting memory or disk.
const MAX_FILE_BYTES: u64 = 1 << 30;

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

#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// `--data-dir`: if set, the only place looked in; never falls back, never downloads.
    pub data_dir: Option<PathBuf>,
    /// `--offline`: forbid the download.
    pub offline: bool,
    /// Where the `.gz` files are downloaded from; must end in `/` or have one appended.
    pub base_url: String,
    /// Show progress bars while downloading.
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

/// Parses a decompressed IDX image file; `name` is used in error messages.
/// Returns the number of images and their pixels (N*28*28 bytes).
pub fn parse_images(name: &str, bytes: &[u8]) -> Result<(usize, Vec<u8>)> {
    let count = check_images(name, bytes)?;
    Ok((count, bytes[IMAGES_HEADER..].to_vec()))
}

/// Parses a decompressed IDX label file; `name` is used in error messages.
pub fn parse_labels(name: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    check_labels(name, bytes)?;
    Ok(bytes[LABELS_HEADER..].to_vec())
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

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "gz")
}

/// Reads a whole file, decompressing it if its name ends in `.gz`.
fn read_decompressed(path: &Path) -> Result<Vec<u8>> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let gz = is_gz(path);
    let reader: Box<dyn Read> = if gz { Box::new(MultiGzDecoder::new(BufReader::new(file))) } else { Box::new(file) };
    let mut bytes = Vec::new();
    reader.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| {
        if gz {
            anyhow!("{}: corrupt gzip: {e}", path.display())
        } else {
            anyhow!("{}: read error: {e}", path.display())
        }
    })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        bail!("{}: more than {MAX_FILE_BYTES} bytes (decompressed); not a Fashion-MNIST file", path.display());
    }
    Ok(bytes)
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks a decompressed IDX image file and returns its image count.
fn check_images(name: &str, bytes: &[u8]) -> Result<usize> {
    if bytes.len() < IMAGES_HEADER {
        bail!(
            "{name}: truncated: {} bytes is shorter than the {IMAGES_HEADER}-byte header of an \
             IDX image file",
            bytes.len()
        );
    }
    let magic = be_u32(bytes, 0);
    if magic != IMAGES_MAGIC {
        bail!(
            "{name}: bad magic number 0x{magic:08x}, expected 0x{IMAGES_MAGIC:08x} (IDX image \
             file){}",
            if magic == LABELS_MAGIC { "; this is a label file" } else { "" }
        );
    }
    let count = be_u32(bytes, 4) as u64;
    let (rows, cols) = (be_u32(bytes, 8), be_u32(bytes, 12));
    if rows as usize != IMAGE_SIDE || cols as usize != IMAGE_SIDE {
        bail!("{name}: wrong dimensions: images are {rows}x{cols}, expected {IMAGE_SIDE}x{IMAGE_SIDE}");
    }
    let what = format!("{count} images of {rows}x{cols}");
    check_length(name, &what, IMAGES_HEADER as u64 + count * IMAGE_BYTES as u64, bytes.len())?;
    Ok(count as usize)
}

/// Checks a decompressed IDX label file, including that every label is a class index.
fn check_labels(name: &str, bytes: &[u8]) -> Result<()> {
    if bytes.len() < LABELS_HEADER {
        bail!(
            "{name}: truncated: {} bytes is shorter than the {LABELS_HEADER}-byte header of an \
             IDX label file",
            bytes.len()
        );
    }
    let magic = be_u32(bytes, 0);
    if magic != LABELS_MAGIC {
        bail!(
            "{name}: bad magic number 0x{magic:08x}, expected 0x{LABELS_MAGIC:08x} (IDX label \
             file){}",
            if magic == IMAGES_MAGIC { "; this is an image file" } else { "" }
        );
    }
    let count = be_u32(bytes, 4) as u64;
    check_length(name, &format!("{count} labels"), LABELS_HEADER as u64 + count, bytes.len())?;
    if let Some((i, &label)) =
        bytes[LABELS_HEADER..].iter().enumerate().find(|(_, &label)| label as usize >= NUM_CLASSES)
    {
        bail!("{name}: label {label} at index {i} is out of range (classes are 0..={})", NUM_CLASSES - 1);
    }
    Ok(())
}

fn check_length(name: &str, what: &str, expected: u64, actual: usize) -> Result<()> {
    let actual = actual as u64;
    if actual < expected {
        bail!("{name}: truncated: header says {what} ({expected} bytes) but the file holds {actual}");
    }
    if actual > expected {
        bail!(
            "{name}: {} trailing bytes: header says {what} ({expected} bytes) but the file holds \
             {actual}",
            actual - expected
        );
    }
    Ok(())
}

/// Why a download failed, and which URL it was fetching (None: it failed before fetching).
struct DownloadError {
    url: Option<String>,
    reason: anyhow::Error,
}

/// Downloads the files that `dir` lacks; files already there (from an earlier, partly
/// successful run) are kept, since every file this code writes was verified first.
fn download_missing(opts: &LoadOptions, dir: &Path, expected: &[Expected]) -> std::result::Result<(), DownloadError> {
    fs::create_dir_all(dir)
        .map_err(|e| DownloadError { url: None, reason: anyhow!("cannot create {}: {e}", dir.display()) })?;
    let mut base = opts.base_url.clone();
    if !base.ends_with('/') {
        base.push('/');
    }
    let agent = make_agent(&base);
    let missing = missing_files(dir);
    if opts.progress && !missing.is_empty() {
        eprintln!("Downloading Fashion-MNIST from {base} into {}", dir.display());
    }
    for name in missing {
        let url = format!("{base}{name}.gz");
        let result = match expected.iter().find(|e| e.0 == name) {
            Some(&(_, sha256, size)) => download_one(&agent, &url, dir, name, sha256, size, opts.progress),
            None => Err(anyhow!("no checksum known for {name}")),
        };
        result.map_err(|reason| DownloadError { url: Some(url), reason })?;
    }
    Ok(())
}

fn make_agent(base_url: &str) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        // Catches a stalled transfer without capping how long a slow but live one may take.
        .timeout_per_read(Some(Duration::from_secs(60)));
    // A proxy from the environment cannot reach this machine's loopback address.
    if is_loopback_url(base_url) {
        config = config.proxy(None);
    }
    ureq::Agent::new_with_config(config.build())
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    ["127.", "localhost:", "localhost/", "[::1]"].iter().any(|prefix| rest.starts_with(prefix)) || rest == "localhost"
}

/// Removes a file when dropped, unless disarmed: the `.part` file must not outlive a failure.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = fs::remove_file(path);
        }
    }
}

fn download_one(
    agent: &ureq::Agent,
    url: &str,
    dir: &Path,
    name: &str,
    sha256: &str,
    size: u64,
    progress: bool,
) -> Result<()> {
    let final_path = dir.join(format!("{name}.gz"));
    let part_path = dir.join(format!("{name}.gz.part"));

    let mut response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => anyhow!("the server answered HTTP status {code}"),
        other => anyhow!("request failed: {other}"),
    })?;
    let total = response.body().content_length();

    let mut guard = RemoveOnDrop(Some(part_path.clone()));
    let file = File::create(&part_path).with_context(|| format!("cannot create {}", part_path.display()))?;
    let bar = progress_bar(progress, name, total);
    let mut out = BufWriter::new(file);
    let mut body = response.body_mut().as_reader();
    let mut buf = vec![0u8; 64 * 1024];
    let mut received: u64 = 0;
    loop {
        let n = body.read(&mut buf).map_err(|e| anyhow!("transfer failed after {received} bytes: {e}"))?;
        if n == 0 {
            break;
        }
        received += n as u64;
        if received > MAX_FILE_BYTES {
            bail!("the server sent more than {MAX_FILE_BYTES} bytes; not a Fashion-MNIST file");
        }
        out.write_all(&buf[..n]).with_context(|| format!("cannot write {}", part_path.display()))?;
        bar.inc(n as u64);
    }
    let file = out.into_inner().map_err(|e| anyhow!("cannot write {}: {}", part_path.display(), e.error()))?;
    file.sync_all().with_context(|| format!("cannot sync {}", part_path.display()))?;
    drop(file);
    bar.finish_and_clear();

    verify(&part_path, name, sha256, size)?;
    fs::rename(&part_path, &final_path)
        .with_context(|| format!("cannot rename {} to {}", part_path.display(), final_path.display()))?;
    guard.0 = None;
    // Persist the rename itself; not all platforms can sync a directory, hence best effort.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    if progress {
        eprintln!("  {} ({received} bytes, verified)", final_path.display());
    }
    Ok(())
}

fn progress_bar(show: bool, name: &str, total: Option<u64>) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(len) => (ProgressBar::new(len), "{msg:28} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"),
        None => (ProgressBar::new_spinner(), "{msg:28} {spinner} {bytes} {bytes_per_sec}"),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("{name}.gz"));
    bar
}

/// Checks the decompressed size and SHA-256 of a downloaded `.gz` file.
fn verify(path: &Path, name: &str, sha256: &str, size: u64) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = MultiGzDecoder::new(BufReader::new(file)).take(MAX_FILE_BYTES + 1);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => bail!("the downloaded {name}.gz is not valid gzip: {e}"),
        };
        hasher.update(&buf[..n]);
        got += n as u64;
    }
    if got != size {
        bail!("size mismatch: {name} decompresses to {got} bytes, expected {size}");
    }
    let digest = hex(&hasher.finalize());
    if !digest.eq_ignore_ascii_case(sha256) {
        bail!("SHA-256 mismatch: decompressed {name} has {digest}, expected {sha256}");
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread::JoinHandle;
    use std::time::Instant;

    // ---- synthetic IDX files ----

    fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [IMAGES_MAGIC, count, rows, cols] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(pixels);
        out
    }

    fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
        out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        out.extend_from_slice(labels);
        out
    }

    fn pixels(count: usize, seed: u8) -> Vec<u8> {
        (0..count * IMAGE_BYTES).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    fn labels_for(count: usize) -> Vec<u8> {
        (0..count).map(|i| (i % NUM_CLASSES) as u8).collect()
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// The decompressed content of the four files of a small synthetic data set.
    fn synthetic(train: usize, test: usize) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (TRAIN_IMAGES, idx_images(train as u32, 28, 28, &pixels(train, 1))),
            (TRAIN_LABELS, idx_labels(&labels_for(train))),
            (TEST_IMAGES, idx_images(test as u32, 28, 28, &pixels(test, 2))),
            (TEST_LABELS, idx_labels(&labels_for(test))),
        ]
    }

    fn write_files(dir: &Path, files: &[(&str, Vec<u8>)], gzipped: bool) {
        fs::create_dir_all(dir).unwrap();
        for (name, bytes) in files {
            if gzipped {
                fs::write(dir.join(format!("{name}.gz")), gz(bytes)).unwrap();
            } else {
                fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }

    fn hashes_of(files: &[(&str, Vec<u8>)]) -> Vec<(String, String, u64)> {
        files.iter().map(|(name, bytes)| (name.to_string(), hex(&Sha256::digest(bytes)), bytes.len() as u64)).collect()
    }

    fn as_expected(table: &[(String, String, u64)]) -> Vec<Expected<'_>> {
        table.iter().map(|(n, h, s)| (n.as_str(), h.as_str(), *s)).collect()
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "kd-data-test-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
        fn sub(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn err_text<T: std::fmt::Debug>(result: Result<T>) -> String {
        format!("{:#}", result.expect_err("expected an error"))
    }

    fn opts_for_dir(dir: &Path) -> LoadOptions {
        LoadOptions { data_dir: Some(dir.to_path_buf()), ..LoadOptions::default() }
    }

    // ---- a tiny HTTP/1.1 server on loopback ----

    enum Reply {
        Body(Vec<u8>),
        /// Announces the full length, sends half, and hangs up.
        Cut(Vec<u8>),
    }

    struct Server {
        base_url: String,
        handle: JoinHandle<Vec<String>>,
    }

    impl Server {
        /// Serves `routes` (path -> reply; anything else is 404) for exactly `requests`
        /// connections, or until a deadline, then exits returning the paths requested.
        fn start(routes: Vec<(String, Reply)>, requests: usize) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let base_url = format!("http://{}/files/", listener.local_addr().unwrap());
            listener.set_nonblocking(true).unwrap();
            let handle = std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut seen = Vec::new();
                while seen.len() < requests && Instant::now() < deadline {
                    let mut stream = match listener.accept() {
                        Ok((stream, _)) => stream,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                        Err(_) => break,
                    };
                    stream.set_nonblocking(false).unwrap();
                    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut request = Vec::new();
                    let mut byte = [0u8; 1];
                    while !request.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte) {
                            Ok(1) => request.push(byte[0]),
                            _ => break,
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
                    let reply = routes.iter().find(|(p, _)| *p == path).map(|(_, r)| r);
                    let _ = match reply {
                        Some(Reply::Body(body)) => write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .and_then(|_| stream.write_all(body)),
                        Some(Reply::Cut(body)) => write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .and_then(|_| stream.write_all(&body[..body.len() / 2])),
                        None => stream.write_all(
                            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
                        ),
                    };
                    let _ = stream.flush();
                    seen.push(path);
                }
                seen
            });
            Server { base_url, handle }
        }

        fn requests(self) -> Vec<String> {
            self.handle.join().unwrap()
        }
    }

    /// A listening socket that never answers: any connection attempt would be left queued in
    /// its backlog, where `assert_untouched` finds it.
    fn silent_listener() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        (listener, url)
    }

    fn assert_untouched(listener: &TcpListener) {
        listener.set_nonblocking(true).unwrap();
        match listener.accept() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => panic!("the network was used: {other:?}"),
        }
    }

    fn gz_routes(files: &[(&str, Vec<u8>)]) -> Vec<(String, Reply)> {
        files.iter().map(|(name, bytes)| (format!("/files/{name}.gz"), Reply::Body(gz(bytes)))).collect()
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        match fs::read_dir(dir) {
            Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        }
    }

    // ---- parsing ----

    #[test]
    fn parse_round_trip() {
        let px = pixels(3, 7);
        let (count, parsed) = parse_images("imgs", &idx_images(3, 28, 28, &px)).unwrap();
        assert_eq!(count, 3);
        assert_eq!(parsed, px);
        let labels = vec![0, 9, 4];
        assert_eq!(parse_labels("labs", &idx_labels(&labels)).unwrap(), labels);
        // An empty file with a valid header is well-formed.
        assert_eq!(parse_images("e", &idx_images(0, 28, 28, &[])).unwrap().0, 0);
    }

    #[test]
    fn bad_magic() {
        let mut bytes = idx_images(1, 28, 28, &pixels(1, 0));
        bytes[3] = 0x01;
        let msg = err_text(parse_images("some/imgs", &bytes));
        assert!(msg.contains("some/imgs") && msg.contains("bad magic"), "{msg}");
        assert!(msg.contains("0x00000801") && msg.contains("label file"), "{msg}");

        let mut bytes = idx_labels(&[1, 2]);
        bytes[3] = 0x03;
        let msg = err_text(parse_labels("some/labs", &bytes));
        assert!(msg.contains("some/labs") && msg.contains("bad magic"), "{msg}");
    }

    #[test]
    fn wrong_dimensions() {
        let msg = err_text(parse_images("imgs", &idx_images(1, 27, 28, &[0; 27 * 28])));
        assert!(msg.contains("imgs") && msg.contains("27x28") && msg.contains("expected 28x28"), "{msg}");
    }

    #[test]
    fn truncated_and_trailing() {
        let full = idx_images(3, 28, 28, &pixels(3, 0));
        let msg = err_text(parse_images("imgs", &full[..1234]));
        assert!(
            msg.contains("imgs: truncated: header says 3 images of 28x28 (2368 bytes) but the file holds 1234"),
            "{msg}"
        );
        let msg = err_text(parse_images("imgs", &full[..10]));
        assert!(msg.contains("imgs: truncated") && msg.contains("header"), "{msg}");

        let mut long = full.clone();
        long.extend_from_slice(&[0; 5]);
        let msg = err_text(parse_images("imgs", &long));
        assert!(msg.contains("imgs: 5 trailing bytes"), "{msg}");

        let labels = idx_labels(&[1, 2, 3]);
        let msg = err_text(parse_labels("labs", &labels[..9]));
        assert!(msg.contains("labs: truncated: header says 3 labels"), "{msg}");
        let mut long = labels.clone();
        long.push(0);
        let msg = err_text(parse_labels("labs", &long));
        assert!(msg.contains("labs: 1 trailing bytes"), "{msg}");
        let msg = err_text(parse_labels("labs", &labels[..4]));
        assert!(msg.contains("labs: truncated"), "{msg}");
    }

    #[test]
    fn label_out_of_range() {
        let msg = err_text(parse_labels("labs", &idx_labels(&[0, 9, 10, 3])));
        assert!(msg.contains("labs") && msg.contains("label 10 at index 2") && msg.contains("out of range"), "{msg}");
    }

    // ---- loading from directories ----

    #[test]
    fn loads_gz_and_raw_and_prefers_gz() {
        let tmp = TempDir::new();
        let files = synthetic(5, 3);
        let dir = tmp.sub("mixed");
        // Train files gzipped, test files unpacked.
        write_files(&dir, &files[..2], true);
        write_files(&dir, &files[2..], false);
        let ds = load_from(&opts_for_dir(&dir), &[], None, &EXPECTED).unwrap();
        assert_eq!(ds.source, dir);
        assert_eq!((ds.train.len(), ds.test.len()), (5, 3));
        assert_eq!(ds.train.images, pixels(5, 1));
        assert_eq!(ds.test.images, pixels(3, 2));
        assert_eq!(ds.train.labels, labels_for(5));

        // An unpacked copy that disagrees with the .gz next to it is ignored.
        fs::write(dir.join(TRAIN_IMAGES), b"garbage").unwrap();
        let again = load_from(&opts_for_dir(&dir), &[], None, &EXPECTED).unwrap();
        assert_eq!(again.train.images, ds.train.images);

        let mut train = again.train;
        train.truncate(2);
        assert_eq!((train.len(), train.images.len()), (2, 2 * IMAGE_BYTES));
        train.truncate(10);
        assert_eq!(train.len(), 2);
    }

    #[test]
    fn count_mismatch_between_images_and_labels() {
        let tmp = TempDir::new();
        let dir = tmp.sub("d");
        let mut files = synthetic(4, 2);
        files[1].1 = idx_labels(&labels_for(3));
        write_files(&dir, &files, true);
        let msg = err_text(load_from(&opts_for_dir(&dir), &[], None, &EXPECTED));
        assert!(msg.contains("train split") && msg.contains("4 images") && msg.contains("3 labels"), "{msg}");
        assert!(msg.contains(&format!("{TRAIN_IMAGES}.gz")) && msg.contains(&format!("{TRAIN_LABELS}.gz")), "{msg}");
    }

    #[test]
    fn corrupt_gzip() {
        let tmp = TempDir::new();
        let dir = tmp.sub("d");
        let files = synthetic(4, 2);
        write_files(&dir, &files, true);
        let path = dir.join(format!("{TEST_IMAGES}.gz"));

        let packed = gz(&files[2].1);
        fs::write(&path, &packed[..packed.len() / 2]).unwrap();
        let msg = err_text(load_from(&opts_for_dir(&dir), &[], None, &EXPECTED));
        assert!(msg.contains(&path.display().to_string()) && msg.contains("corrupt gzip"), "{msg}");

        fs::write(&path, b"this is not gzip data at all").unwrap();
        let msg = err_text(load_from(&opts_for_dir(&dir), &[], None, &EXPECTED));
        assert!(msg.contains(&path.display().to_string()) && msg.contains("corrupt gzip"), "{msg}");

        // A flipped bit inside the stream is caught by the deflate decoder or the CRC.
        let mut flipped = packed.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x55;
        fs::write(&path, &flipped).unwrap();
        let msg = err_text(load_from(&opts_for_dir(&dir), &[], None, &EXPECTED));
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }

    #[test]
    fn broken_file_in_a_dir_is_reported_with_its_path() {
        let tmp = TempDir::new();
        let dir = tmp.sub("d");
        let mut files = synthetic(2, 2);
        files[3].1 = idx_labels(&[3, 11]);
        write_files(&dir, &files, false);
        let msg = err_text(load_from(&opts_for_dir(&dir), &[], None, &EXPECTED));
        let path = dir.join(TEST_LABELS).display().to_string();
        assert!(msg.contains(&path) && msg.contains("label 11"), "{msg}");
    }

    #[test]
    fn data_dir_missing_file_never_falls_back() {
        let tmp = TempDir::new();
        let good = tmp.sub("good");
        write_files(&good, &synthetic(2, 2), true);
        let partial = tmp.sub("partial");
        write_files(&partial, &synthetic(2, 2)[..3], true);
        let (listener, url) = silent_listener();
        let opts = LoadOptions { base_url: url, ..opts_for_dir(&partial) };

        // A complete directory in the search list and a download directory are both ignored.
        let msg = err_text(load_from(&opts, std::slice::from_ref(&good), Some(&good), &EXPECTED));
        assert!(msg.contains(&partial.display().to_string()) && msg.contains(TEST_LABELS), "{msg}");
        assert!(msg.contains("missing") && !msg.contains(TRAIN_IMAGES), "{msg}");
        assert_untouched(&listener);

        let nowhere = tmp.sub("nowhere");
        let opts = LoadOptions { data_dir: Some(nowhere.clone()), ..opts };
        let msg = err_text(load_from(&opts, std::slice::from_ref(&good), Some(&good), &EXPECTED));
        assert!(msg.contains(&nowhere.display().to_string()) && msg.contains("no such directory"), "{msg}");
        assert_untouched(&listener);
    }

    #[test]
    fn search_takes_first_complete_dir() {
        let tmp = TempDir::new();
        let (a, b, c) = (tmp.sub("a"), tmp.sub("b"), tmp.sub("c"));
        write_files(&a, &synthetic(2, 2)[1..], true); // incomplete
        write_files(&b, &synthetic(3, 2), false);
        write_files(&c, &synthetic(4, 2), true);
        let search = [tmp.sub("absent"), a, b.clone(), c];
        let ds = load_from(&LoadOptions::default(), &search, None, &EXPECTED).unwrap();
        assert_eq!(ds.source, b);
        assert_eq!(ds.train.len(), 3);
    }

    // ---- downloading ----

    #[test]
    fn download_succeeds_and_is_verified() {
        let tmp = TempDir::new();
        let files = synthetic(6, 4);
        let table = hashes_of(&files);
        let server = Server::start(gz_routes(&files), 4);
        let dest = tmp.sub("cache/fashion-mnist"); // created on demand
        let opts = LoadOptions { base_url: server.base_url.clone(), ..LoadOptions::default() };
        let search = [tmp.sub("empty"), dest.clone()];

        let ds = load_from(&opts, &search, Some(&dest), &as_expected(&table)).unwrap();
        assert_eq!(ds.source, dest);
        assert_eq!((ds.train.len(), ds.test.len()), (6, 4));
        assert_eq!(ds.test.images, pixels(4, 2));
        let mut requested = server.requests();
        requested.sort();
        let mut wanted: Vec<String> = FILE_NAMES.iter().map(|n| format!("/files/{n}.gz")).collect();
        wanted.sort();
        assert_eq!(requested, wanted);
        let mut names = leftovers(&dest);
        names.sort();
        let mut gz_names: Vec<String> = FILE_NAMES.iter().map(|n| format!("{n}.gz")).collect();
        gz_names.sort();
        assert_eq!(names, gz_names);
    }

    #[test]
    fn download_fetches_only_missing_files() {
        let tmp = TempDir::new();
        let files = synthetic(2, 2);
        let table = hashes_of(&files);
        let dest = tmp.sub("dl");
        write_files(&dest, &files[..2], true);
        let server = Server::start(gz_routes(&files), 2);
        let opts = LoadOptions { base_url: server.base_url.clone(), ..LoadOptions::default() };
        let ds = load_from(&opts, std::slice::from_ref(&dest), Some(&dest), &as_expected(&table)).unwrap();
        assert_eq!(ds.test.len(), 2);
        let mut requested = server.requests();
        requested.sort();
        assert_eq!(requested, vec![format!("/files/{TEST_IMAGES}.gz"), format!("/files/{TEST_LABELS}.gz")]);
    }

    #[test]
    fn download_hash_mismatch_leaves_nothing() {
        let tmp = TempDir::new();
        let files = synthetic(2, 2);
        let mut table = hashes_of(&files);
        let first = FILE_NAMES[0];
        let entry = table.iter_mut().find(|e| e.0 == first).unwrap();
        entry.1 = "00".repeat(32);
        let server = Server::start(gz_routes(&files), 1);
        let dest = tmp.sub("dl");
        let opts = LoadOptions { base_url: server.base_url.clone(), ..LoadOptions::default() };
        let msg = err_text(load_from(&opts, std::slice::from_ref(&dest), Some(&dest), &as_expected(&table)));
        assert_eq!(server.requests().len(), 1);
        assert!(msg.contains("SHA-256 mismatch") && msg.contains(&format!("{}{first}.gz", opts.base_url)), "{msg}");
        assert!(msg.contains("apt-get install dataset-fashion-mnist") && msg.contains("--data-dir DIR"), "{msg}");
        assert!(leftovers(&dest).is_empty(), "{:?}", leftovers(&dest));

        // A wrong size is caught the same way.
        let mut table = hashes_of(&files);
        table.iter_mut().find(|e| e.0 == first).unwrap().2 += 1;
        let server = Server::start(gz_routes(&files), 1);
        let opts = LoadOptions { base_url: server.base_url.clone(), ..opts };
        let msg = err_text(load_from(&opts, std::slice::from_ref(&dest), Some(&dest), &as_expected(&table)));
        server.requests();
        assert!(msg.contains("size mismatch"), "{msg}");
        assert!(leftovers(&dest).is_empty(), "{:?}", leftovers(&dest));
    }

    #[test]
    fn download_cut_short_leaves_nothing() {
        let tmp = TempDir::new();
        let files = synthetic(50, 2);
        let table = hashes_of(&files);
        let routes = files.iter().map(|(name, bytes)| (format!("/files/{name}.gz"), Reply::Cut(gz(bytes)))).collect();
        let server = Server::start(routes, 1);
        let dest = tmp.sub("dl");
        let opts = LoadOptions { base_url: server.base_url.clone(), ..LoadOptions::default() };
        let msg = err_text(load_from(&opts, std::slice::from_ref(&dest), Some(&dest), &as_expected(&table)));
        server.requests();
        assert!(msg.contains("transfer failed"), "{msg}");
        assert!(leftovers(&dest).is_empty(), "{:?}", leftovers(&dest));
    }

    #[test]
    fn download_404_lists_url_and_alternatives() {
        let tmp = TempDir::new();
        let server = Server::start(Vec::new(), 1);
        let dest = tmp.sub("dl");
        let other = tmp.sub("other");
        let opts = LoadOptions { base_url: server.base_url.clone(), ..LoadOptions::default() };
        let msg = err_text(load_from(&opts, &[dest.clone(), other.clone()], Some(&dest), &EXPECTED));
        let requested = server.requests();
        assert_eq!(requested.len(), 1);
        assert!(msg.contains(&format!("URL tried: {}{}.gz", opts.base_url, FILE_NAMES[0])), "{msg}");
        assert!(msg.contains("404"), "{msg}");
        assert!(msg.contains(&dest.display().to_string()) && msg.contains(&other.display().to_string()), "{msg}");
        assert!(msg.contains("apt-get install dataset-fashion-mnist") && msg.contains(DEBIAN_DIR), "{msg}");
        assert!(msg.contains("--data-dir DIR"), "{msg}");
        assert!(leftovers(&dest).is_empty(), "{:?}", leftovers(&dest));
    }

    #[test]
    fn offline_lists_dirs_without_touching_the_network() {
        let tmp = TempDir::new();
        let (a, b) = (tmp.sub("a"), tmp.sub("b"));
        write_files(&b, &synthetic(2, 2)[..2], true);
        let (listener, url) = silent_listener();
        let opts = LoadOptions { offline: true, base_url: url, ..LoadOptions::default() };
        let msg = err_text(load_from(&opts, &[a.clone(), b.clone()], Some(&a), &EXPECTED));
        assert_untouched(&listener);
        assert!(msg.contains(&format!("{}: no such directory", a.display())), "{msg}");
        assert!(msg.contains(&format!("{}: missing {TEST_IMAGES}, {TEST_LABELS}", b.display())), "{msg}");
        assert!(msg.contains("--offline") && !msg.contains("URL tried"), "{msg}");
        assert!(msg.contains("apt-get install dataset-fashion-mnist") && msg.contains("--data-dir DIR"), "{msg}");
        assert!(!a.exists());
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_url("http://127.0.0.1:8080/x/"));
        assert!(is_loopback_url("http://localhost:80/"));
        assert!(is_loopback_url("http://[::1]:80/"));
        assert!(!is_loopback_url(UPSTREAM_URL));
        assert!(!is_loopback_url("http://localhost.example.com/"));
    }

    // ---- the real data, where the Debian package is installed ----

    #[test]
    fn debian_files_when_present() {
        let dir = Path::new(DEBIAN_DIR);
        if !missing_files(dir).is_empty() {
            eprintln!("skipped: {DEBIAN_DIR} does not hold the four files");
            return;
        }
        let ds = load_from(&opts_for_dir(dir), &[], None, &EXPECTED).unwrap();
        assert_eq!((ds.train.len(), ds.test.len()), (60_000, 10_000));
        assert_eq!(ds.train.images.len(), 60_000 * IMAGE_BYTES);
        assert_eq!(ds.test.images.len(), 10_000 * IMAGE_BYTES);
        // The checksum table that downloads are held to matches these files.
        for &(name, sha256, size) in &EXPECTED {
            if let Some(path) = locate(dir, name).filter(|p| is_gz(p)) {
                verify(&path, name, sha256, size).unwrap();
            }
        }
    }
}
