//! The loader's tests: synthetic IDX files, directories, and a loopback HTTP server.

use super::download::*;
use super::idx::*;
use super::*;
use anyhow::Result;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    files.iter().map(|(name, bytes)| (name.to_string(), crate::digest::sha256_hex(bytes), bytes.len() as u64)).collect()
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
                    Some(Reply::Body(body)) => {
                        write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                            .and_then(|_| stream.write_all(body))
                    }
                    Some(Reply::Cut(body)) => {
                        write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                            .and_then(|_| stream.write_all(&body[..body.len() / 2]))
                    }
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
    assert_eq!(
        msg,
        "some/imgs: bad magic number 0x00000801, expected 0x00000803 (IDX image file); this is a label file"
    );

    let mut bytes = idx_labels(&[1, 2]);
    bytes[3] = 0x03;
    let msg = err_text(parse_labels("some/labs", &bytes));
    assert!(msg.contains("some/labs") && msg.contains("bad magic"), "{msg}");
    assert_eq!(
        msg,
        "some/labs: bad magic number 0x00000803, expected 0x00000801 (IDX label file); this is an image file"
    );

    let msg = err_text(parse_labels("some/labs", &idx_labels(&[1])[..5]));
    assert_eq!(msg, "some/labs: truncated: 5 bytes is shorter than the 8-byte header of an IDX label file");
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
