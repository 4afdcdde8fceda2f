//! The IDX files: reading (gzipped or not), and checking every header field, length and label.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use flate2::read::MultiGzDecoder;

use super::{IMAGE_BYTES, IMAGE_SIDE, NUM_CLASSES};

pub(super) const IMAGES_MAGIC: u32 = 0x0000_0803;
pub(super) const LABELS_MAGIC: u32 = 0x0000_0801;
pub(super) const IMAGES_HEADER: usize = 16;
pub(super) const LABELS_HEADER: usize = 8;

/// Upper bound on any file, compressed or not: the real ones are under 50 MB, and the bound
/// keeps a corrupt or hostile gzip stream from exhausting memory or disk.
pub(super) const MAX_FILE_BYTES: u64 = 1 << 30;

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

pub(super) fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "gz")
}

/// Reads a whole file, decompressing it if its name ends in `.gz`.
pub(super) fn read_decompressed(path: &Path) -> Result<Vec<u8>> {
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

/// One kind of IDX file: its magic number, its header's length, and its name in messages.
struct IdxKind {
    magic: u32,
    header: usize,
    word: &'static str,
    article: &'static str,
}

const IMAGE_FILE: IdxKind = IdxKind { magic: IMAGES_MAGIC, header: IMAGES_HEADER, word: "image", article: "an" };
const LABEL_FILE: IdxKind = IdxKind { magic: LABELS_MAGIC, header: LABELS_HEADER, word: "label", article: "a" };

/// Checks that `bytes` hold a whole header of `kind` with its magic number (saying so when the
/// file is the `other` kind instead), and returns the header's item count.
fn check_header(name: &str, bytes: &[u8], kind: &IdxKind, other: &IdxKind) -> Result<u64> {
    if bytes.len() < kind.header {
        bail!(
            "{name}: truncated: {} bytes is shorter than the {}-byte header of an IDX {} file",
            bytes.len(),
            kind.header,
            kind.word
        );
    }
    let magic = be_u32(bytes, 0);
    if magic != kind.magic {
        let hint = if magic == other.magic {
            format!("; this is {} {} file", other.article, other.word)
        } else {
            String::new()
        };
        bail!("{name}: bad magic number 0x{magic:08x}, expected 0x{:08x} (IDX {} file){hint}", kind.magic, kind.word);
    }
    Ok(be_u32(bytes, 4) as u64)
}

/// Checks a decompressed IDX image file and returns its image count.
pub(super) fn check_images(name: &str, bytes: &[u8]) -> Result<usize> {
    let count = check_header(name, bytes, &IMAGE_FILE, &LABEL_FILE)?;
    let (rows, cols) = (be_u32(bytes, 8), be_u32(bytes, 12));
    if rows as usize != IMAGE_SIDE || cols as usize != IMAGE_SIDE {
        bail!("{name}: wrong dimensions: images are {rows}x{cols}, expected {IMAGE_SIDE}x{IMAGE_SIDE}");
    }
    let what = format!("{count} images of {rows}x{cols}");
    check_length(name, &what, IMAGES_HEADER as u64 + count * IMAGE_BYTES as u64, bytes.len())?;
    Ok(count as usize)
}

/// Checks a decompressed IDX label file, including that every label is a class index.
pub(super) fn check_labels(name: &str, bytes: &[u8]) -> Result<()> {
    let count = check_header(name, bytes, &LABEL_FILE, &IMAGE_FILE)?;
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
