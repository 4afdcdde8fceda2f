//! Downloading the missing files, each verified against the SHA-256 of its content before it
//! is renamed into place.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use flate2::read::MultiGzDecoder;
use indicatif::{ProgressBar, ProgressStyle};

use super::idx::MAX_FILE_BYTES;
use super::{missing_files, LoadOptions, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};

pub const UPSTREAM_URL: &str = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/";

/// (file name, SHA-256 of the decompressed file as lower-case hex, decompressed size in bytes).
pub(super) type Expected<'a> = (&'a str, &'a str, u64);

/// Checksums of the decompressed files. Upstream only publishes MD5s of its `.gz` files, and
/// other mirrors recompress, so the decompressed content is what is compared.
pub(super) const EXPECTED: [Expected<'static>; 4] = [
    (TRAIN_IMAGES, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47_040_016),
    (TRAIN_LABELS, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60_008),
    (TEST_IMAGES, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7_840_016),
    (TEST_LABELS, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10_008),
];

/// Why a download failed, and which URL it was fetching (None: it failed before fetching).
pub(super) struct DownloadError {
    pub(super) url: Option<String>,
    pub(super) reason: anyhow::Error,
}

/// Downloads the files that `dir` lacks; files already there (from an earlier, partly
/// successful run) are kept, since every file this code writes was verified first.
pub(super) fn download_missing(
    opts: &LoadOptions,
    dir: &Path,
    expected: &[Expected],
) -> std::result::Result<(), DownloadError> {
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

pub(super) fn is_loopback_url(url: &str) -> bool {
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
pub(super) fn verify(path: &Path, name: &str, sha256: &str, size: u64) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = MultiGzDecoder::new(BufReader::new(file)).take(MAX_FILE_BYTES + 1);
    let mut hasher = crate::digest::Hasher::new();
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
    let digest = hasher.hex();
    if !digest.eq_ignore_ascii_case(sha256) {
        bail!("SHA-256 mismatch: decompressed {name} has {digest}, expected {sha256}");
    }
    Ok(())
}
