//! The home directory holds personal data (the database, the outbox of e-mails), the dev PINs
//! (nuc.toml) and the HSM token: only the account that runs the service may read any of it.
//!
//! This module owns the modes of the home: 0700 for every directory, 0600 for every file, set
//! explicitly when `nuc init` has made the home, and checked again (and tightened, with a
//! warning naming each path) whenever `nuc serve` starts. It never loosens a mode and never
//! follows a symbolic link out of the home.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Mode of every directory of a home.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file of a home.
pub const FILE_MODE: u32 = 0o600;

/// Takes from every directory and file under `home` (itself included) what the group and
/// the others could do, leaving the owner's bits as they are (a read-only file stays
/// read-only; directories and files get at least what their owner needs, see the modes
/// above). Returns the paths whose mode it changed.
pub fn restrict(home: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    let mut pending = vec![home.to_path_buf()];
    while let Some(path) = pending.pop() {
        // symlink_metadata: a link is not followed (its own mode means nothing on Linux).
        let meta = fs::symlink_metadata(&path)?;
        let wanted = if meta.is_dir() {
            for entry in fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
            DIR_MODE
        } else if meta.is_file() {
            FILE_MODE
        } else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        // Owner bits as wanted (a file keeps its owner bits when it had fewer, e.g. read-only),
        // nothing for the group and the others, no setuid/setgid/sticky.
        let owner = if meta.is_dir() { wanted } else { mode & 0o700 };
        let target = owner & wanted;
        if mode != target {
            fs::set_permissions(&path, fs::Permissions::from_mode(target))?;
            changed.push(path);
        }
    }
    Ok(changed)
}

/// A directory under the home (and its missing parents), created with [`DIR_MODE`].
pub fn create_dir_all(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// A new file under the home, created with [`FILE_MODE`] from its first byte (a file made
/// with the process's umask and tightened afterwards would be readable in between).
pub fn create_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_home_made_world_readable_is_closed_to_all_but_its_owner() {
        let t = tempfile::tempdir().unwrap();
        let home = t.path().join("home");
        fs::create_dir_all(home.join("hsm/tokens")).unwrap();
        fs::write(home.join("nuc.toml"), "pin").unwrap();
        fs::write(home.join("hsm/tokens/x.object"), "key").unwrap();
        fs::write(home.join("readonly"), "r").unwrap();
        for (p, m) in [
            (home.clone(), 0o755),
            (home.join("hsm"), 0o775),
            (home.join("hsm/tokens"), 0o1777),
            (home.join("nuc.toml"), 0o644),
            (home.join("hsm/tokens/x.object"), 0o666),
            (home.join("readonly"), 0o444),
        ] {
            fs::set_permissions(&p, fs::Permissions::from_mode(m)).unwrap();
        }
        let outside = t.path().join("outside");
        fs::write(&outside, "not ours").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, home.join("link")).unwrap();
        let changed = restrict(&home).unwrap();
        assert_eq!(changed.len(), 6, "{changed:?}");
        assert_eq!(mode(&home), 0o700);
        assert_eq!(mode(&home.join("hsm")), 0o700);
        assert_eq!(mode(&home.join("hsm/tokens")), 0o700);
        assert_eq!(mode(&home.join("nuc.toml")), 0o600);
        assert_eq!(mode(&home.join("hsm/tokens/x.object")), 0o600);
        assert_eq!(mode(&home.join("readonly")), 0o400);
        // The link's target is outside the home: untouched.
        assert_eq!(mode(&outside), 0o644);
        // A second pass finds nothing to do.
        assert!(restrict(&home).unwrap().is_empty());
    }

    #[test]
    fn a_new_file_or_directory_is_private_from_the_start() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        create_file(&p).unwrap();
        assert_eq!(mode(&p), 0o600);
        create_dir_all(&t.path().join("a/b")).unwrap();
        assert_eq!(mode(&t.path().join("a")), 0o700);
        assert_eq!(mode(&t.path().join("a/b")), 0o700);
    }
}
