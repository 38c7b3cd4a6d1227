//! The home directory (`--home`, default `/var/lib/skylan`) and the files the daemon
//! reads: the node's identity, the port file the CLI reads, and world files. Secrets
//! are written with mode 0600 and never logged.
//!
//! What is in a home directory, and who reads it:
//!
//! | file | written by | read by |
//! | --- | --- | --- |
//! | `identity.secret`, `identity.public` | [`Home::load_or_create_identity`] | the daemon, `skylan node` |
//! | `authtoken.secret` | `io::http` (the local API token) | the CLI |
//! | `skylan.port` | [`Home::write_port`] | the CLI ([`Home::read_port`]) |
//! | `planet` | the operator (`skylan idtool mkplanet`) | the daemon ([`load_world`]) |
//! | `networks.d/` | `io::networks` | `io::networks`, at start |
//! | `controller.d/` | the controller store | the controller store |
//!
//! World files are read here and only parsed and verified by `world`
//! ([`load_world`], [`load_world_template`]).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand_core::OsRng;

use crate::crypto::identity::Identity;
use crate::world::{World, WorldError, WorldTemplate};

/// Default home directory.
pub const DEFAULT_HOME: &str = "/var/lib/skylan";

/// What went wrong with a file in the home directory; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file's contents are not what they should be.
    #[error("{path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },
}

/// A home directory.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// Opens `dir`, creating it (mode 0700) if missing.
    pub fn create(dir: &Path) -> Result<Self, HomeError> {
        if !dir.exists() {
            fs::create_dir_all(dir).map_err(|source| io_err(dir, source))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|source| io_err(dir, source))?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Opens an existing home directory without creating anything (for the CLI).
    pub fn existing(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path inside the home directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Loads `identity.secret`, or generates a new identity (and writes both identity
    /// files) when there is none.
    pub fn load_or_create_identity(&self) -> Result<Identity, HomeError> {
        let secret = self.path("identity.secret");
        if secret.exists() {
            let text = read_text(&secret)?;
            let identity: Identity = text.trim().parse().map_err(|e| HomeError::Invalid {
                path: secret.clone(),
                problem: format!(
                    "not a valid identity ({e}); restore it from a backup or move it away to generate a new one"
                ),
            })?;
            let public = self.path("identity.public");
            if !public.exists() {
                write_file(&public, identity.public().to_string().as_bytes(), 0o644)?;
            }
            return Ok(identity);
        }
        let identity = Identity::generate(&mut OsRng);
        write_file(&secret, identity.to_secret_string().as_bytes(), 0o600)?;
        write_file(
            &self.path("identity.public"),
            identity.public().to_string().as_bytes(),
            0o644,
        )?;
        Ok(identity)
    }

    /// Records the local API port for the CLI.
    pub fn write_port(&self, port: u16) -> Result<(), HomeError> {
        write_file(
            &self.path("skylan.port"),
            port.to_string().as_bytes(),
            0o644,
        )
    }

    /// The local API port the daemon recorded.
    pub fn read_port(&self) -> Result<u16, HomeError> {
        let path = self.path("skylan.port");
        let text = read_text(&path)?;
        text.trim().parse().map_err(|_| HomeError::Invalid {
            path,
            problem: format!("expected a port number, found {:?}", text.trim()),
        })
    }
}

/// Reads and verifies a signed world file (JSON); errors name the file.
pub fn load_world(path: &Path) -> Result<World, WorldError> {
    World::from_json(&read_world_file(path)?, &path.display().to_string())
}

/// Reads an unsigned world template (a signed world file is accepted too).
pub fn load_world_template(path: &Path) -> Result<WorldTemplate, WorldError> {
    WorldTemplate::from_json(&read_world_file(path)?, &path.display().to_string())
}

fn read_world_file(path: &Path) -> Result<String, WorldError> {
    fs::read_to_string(path).map_err(|source| WorldError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a whole text file; the error names the file.
pub fn read_text(path: &Path) -> Result<String, HomeError> {
    fs::read_to_string(path).map_err(|source| io_err(path, source))
}

/// Writes a file atomically (temporary file, fsync, rename) with the given mode.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), HomeError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|source| io_err(&tmp, source))?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .map_err(|source| io_err(&tmp, source))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
        .map_err(|source| io_err(&tmp, source))?;
    fs::rename(&tmp, path).map_err(|source| io_err(path, source))
}

fn io_err(path: &Path, source: std::io::Error) -> HomeError {
    HomeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_persists_with_a_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::create(&dir.path().join("h")).unwrap();
        let a = home.load_or_create_identity().unwrap();
        let b = home.load_or_create_identity().unwrap();
        assert_eq!(a.public().address(), b.public().address());
        let mode = fs::metadata(home.path("identity.secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn world_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = load_world(&missing).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");

        let path = dir.path().join("planet");
        fs::write(&path, "{}").unwrap();
        let err = load_world(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        let err = load_world_template(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn corrupt_identity_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::create(dir.path()).unwrap();
        fs::write(home.path("identity.secret"), "garbage").unwrap();
        let err = home.load_or_create_identity().unwrap_err().to_string();
        assert!(err.contains("identity.secret"), "{err}");
    }
}
