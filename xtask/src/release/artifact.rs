//! Lambda artifacts: a reproducible zip holding one `bootstrap`, named by its SHA-256; unpacking
//! it again as Lambda does; and the atomic writes every file the release tool leaves goes through.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::environments::Profile;

/// The one entry Lambda's `provided` runtimes execute.
pub const ENTRY: &str = "bootstrap";
/// `rwxr-xr-x`: Lambda must be able to execute it, nobody needs to write it.
pub const MODE: u32 = 0o755;

/// The deflate level of a profile's zips: the smallest for what production runs; for dev's fast
/// builds the quickest, since their zips are big and a loop pays for each (level 9 took 1.2 s on
/// a 30 MB fast binary, level 1 about a fifth of that, for a zip 11% larger).
fn level(profile: Profile) -> i64 {
    match profile {
        Profile::Release => 9,
        Profile::Fast => 1,
    }
}

/// What the zip's comment says of the profile, `biometrix-profile=<profile>`. The comment is part
/// of the zip's bytes, so the key's SHA-256 covers it: the one record of a build's profile that
/// a writer of the bucket cannot change without changing the key (object metadata it can).
const PROFILE_STAMP: &str = "biometrix-profile=";

/// Zips `binary` as `bootstrap`, stamped with its profile. The bytes depend on nothing but
/// `binary` and its profile: fixed timestamp (1980-01-01, the zip epoch), fixed permissions, the
/// profile's compression level, no extra fields, the profile in the archive's comment.
pub fn zip_bootstrap(binary: &[u8], profile: Profile) -> anyhow::Result<Vec<u8>> {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(level(profile)))
        .last_modified_time(DateTime::DEFAULT)
        .unix_permissions(MODE)
        .large_file(false);
    let mut zip = ZipWriter::new(Cursor::new(Vec::with_capacity(binary.len() / 2)));
    zip.start_file(ENTRY, options)
        .context("starting the zip entry")?;
    zip.write_all(binary).context("compressing the binary")?;
    zip.set_comment(format!("{PROFILE_STAMP}{}", profile.as_str()))
        .context("stamping the profile")?;
    Ok(zip.finish().context("finishing the zip")?.into_inner())
}

/// The profile `zip_bootstrap` stamped into `zip`; `None` for a zip without the stamp (made by
/// another tool, or by this one before it stamped).
pub fn stamped_profile(zip: &[u8]) -> Option<Profile> {
    let archive = zip::ZipArchive::new(Cursor::new(zip)).ok()?;
    let comment = std::str::from_utf8(archive.comment()).ok()?;
    comment.strip_prefix(PROFILE_STAMP)?.parse().ok()
}

/// Extracts the zip's `bootstrap` to `to` with the permissions the zip records, as Lambda does.
pub fn unzip_bootstrap(zip: &[u8], to: &Path) -> anyhow::Result<()> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).context("reading the zip")?;
    let mut entry = archive.by_name(ENTRY).context("the zip has no bootstrap")?;
    let mode = entry
        .unix_mode()
        .context("the zip records no permissions")?;
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes)?;
    place(to, &bytes, Some(std::fs::Permissions::from_mode(mode)))
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Bytes as lowercase hex, two digits each.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader (or a later run)
/// sees either the whole file or none of it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    place(path, bytes, None)
}

/// [`write_atomically`], the file given `permissions` before it is moved into place: an
/// executable is never seen without its mode, even while an older one at `path` runs.
fn place(
    path: &Path,
    bytes: &[u8],
    permissions: Option<std::fs::Permissions>,
) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .context("an artifact path has a parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let temporary: PathBuf = dir.join(format!(
        ".{}.{}.partial",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("artifact"),
        std::process::id()
    ));
    std::fs::write(&temporary, bytes)
        .with_context(|| format!("writing {}", temporary.display()))?;
    if let Some(permissions) = permissions {
        std::fs::set_permissions(&temporary, permissions)
            .with_context(|| format!("setting the permissions of {}", temporary.display()))?;
    }
    std::fs::rename(&temporary, path)
        .with_context(|| format!("moving {} into place", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn sample() -> Vec<u8> {
        (0..200_000u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn the_profile_is_stamped_into_the_bytes_the_key_names() {
        let release = zip_bootstrap(&sample(), Profile::Release).unwrap();
        let fast = zip_bootstrap(&sample(), Profile::Fast).unwrap();
        assert_eq!(stamped_profile(&release), Some(Profile::Release));
        assert_eq!(stamped_profile(&fast), Some(Profile::Fast));
        // A zip without the stamp (another tool's, or one re-zipped) has no known profile.
        let mut plain = ZipWriter::new(Cursor::new(Vec::new()));
        plain
            .start_file(ENTRY, SimpleFileOptions::default())
            .unwrap();
        plain.write_all(&sample()).unwrap();
        let plain = plain.finish().unwrap().into_inner();
        assert_eq!(stamped_profile(&plain), None);
        assert_eq!(stamped_profile(b"not a zip"), None);
    }

    #[test]
    fn the_zip_holds_one_executable_bootstrap_with_a_fixed_timestamp() {
        let bytes = zip_bootstrap(&sample(), Profile::Release).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 1);
        let mut entry = archive.by_index(0).unwrap();
        assert_eq!(entry.name().unwrap(), "bootstrap");
        assert_eq!(entry.unix_mode(), Some(0o100_755));
        assert_eq!(entry.compression(), CompressionMethod::Deflated);
        let modified = entry.last_modified().unwrap();
        assert_eq!(
            (
                modified.year(),
                modified.month(),
                modified.day(),
                modified.hour(),
                modified.minute()
            ),
            (1980, 1, 1, 0, 0)
        );
        assert!(
            entry.extra_data().is_none_or(|extra| extra.is_empty()),
            "no extra fields"
        );
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        assert_eq!(content, sample());
    }

    #[test]
    fn the_same_binary_always_gives_the_same_bytes() {
        let first = zip_bootstrap(&sample(), Profile::Release).unwrap();
        let second = zip_bootstrap(&sample(), Profile::Release).unwrap();
        assert_eq!(sha256_hex(&first), sha256_hex(&second));
        let mut other = sample();
        other[0] ^= 1;
        assert_ne!(
            sha256_hex(&zip_bootstrap(&other, Profile::Release).unwrap()),
            sha256_hex(&first)
        );
        // The fast profile's level is another, and as reproducible.
        let fast = zip_bootstrap(&sample(), Profile::Fast).unwrap();
        assert_eq!(fast, zip_bootstrap(&sample(), Profile::Fast).unwrap());
        assert_ne!(fast, first);
    }

    #[test]
    fn unzipping_gives_back_an_executable_bootstrap() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-unzip-{}", std::process::id()));
        let to = dir.join("bootstrap");
        unzip_bootstrap(
            &zip_bootstrap(b"\x7fELF binary", Profile::Release).unwrap(),
            &to,
        )
        .unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"\x7fELF binary");
        let mode = std::fs::metadata(&to).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn atomic_writes_leave_no_partial_file() {
        let dir = std::env::temp_dir().join(format!("xtask-atomic-{}", std::process::id()));
        let path = dir.join("a.zip");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.zip"]);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
