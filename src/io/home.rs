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
//! | `zerotier-one.port` | [`Home::write_port`] (the same port) | ZeroTier's `zerotier-cli -D<home>`, which looks for its port there |
//! | `planet` | the operator (`skylan idtool mkplanet`); the node, with a newer revision accepted in band ([`Home::save_world`]) | the daemon ([`load_world`]) |
//! | `moons.d/<16 hex id>.moon` | the operator (`skylan idtool genmoon`); the node, for a moon it orbits or a newer revision ([`Home::save_world`]) | `skylan node` (the moons it orbits) and `skylan root` (the moons it serves), at start ([`Home::load_moons`]) |
//! | `local.toml` | the operator | `skylan node` and `skylan root`, at start ([`super::local`]) |
//! | `networks.d/` | `io::networks` | `io::networks`, at start |
//! | `controller.d/` | the controller store | the controller store |
//!
//! World files are read here and only parsed and verified by `world`
//! ([`load_world`], [`load_world_template`]). A moon file that does not load is skipped
//! with a warning naming it: a bad moon never stops a daemon (the planet does, since a
//! node without roots is useless). Worlds are written atomically, like every file here.
//!
//! **Damaged state is refused, never replaced.** A home directory that holds part of an
//! identity is never given a new one: [`Home::load_or_create_identity`] creates an
//! identity only when neither identity file exists, and refuses to start (naming the file
//! and what to do) when `identity.secret` is missing, unreadable or invalid, or when
//! `identity.public` is not the public half of `identity.secret`.
//!
//! **Secret files are 0600.** They are created with that mode, and a secret file found
//! with a wider mode (readable or writable by group or others) is tightened to 0600 with
//! a warning that says what may have been exposed and what to do about it, as ZeroTier
//! does with its identity; if the mode cannot be changed (a read-only mount, another
//! owner), the daemon refuses to start, as OpenSSH refuses a private key others can read
//! ([`protect_secret`]).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand_core::OsRng;

use crate::crypto::identity::{Identity, PublicIdentity};
use crate::world::{World, WorldError, WorldKind, WorldTemplate};

/// Default home directory.
pub const DEFAULT_HOME: &str = "/var/lib/skylan";
/// The node's secret identity (mode 0600).
pub const IDENTITY_SECRET: &str = "identity.secret";
/// The node's public identity, derived from the secret one.
pub const IDENTITY_PUBLIC: &str = "identity.public";

/// The directory of moon files (`<16 hex id>.moon`, the JSON of `World::to_json`).
pub const MOONS_DIR: &str = "moons.d";
/// The extension of a moon file.
const MOON_EXTENSION: &str = "moon";

/// What a reader of `identity.secret` could do, and the remedy (for [`protect_secret`]).
const IDENTITY_EXPOSED: &str = "anyone who read it can act as this node; if that may have happened, give the node a new identity (move identity.secret and identity.public away, restart, and authorize the new address)";

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

    /// Loads this node's identity from `identity.secret`; generates a new one (and writes
    /// both identity files) only when neither file exists. Refuses, with a message naming
    /// the file and what to do, when `identity.secret` is missing next to an existing
    /// `identity.public` (a new identity would silently change the node's address), when
    /// it cannot be read or parsed, or when `identity.public` does not belong to it. A
    /// missing `identity.public` is rewritten from the secret. The secret's mode is
    /// checked with [`protect_secret`].
    pub fn load_or_create_identity(&self) -> Result<Identity, HomeError> {
        let secret = self.path(IDENTITY_SECRET);
        let public = self.path(IDENTITY_PUBLIC);
        if !exists(&secret)? {
            if exists(&public)? {
                return Err(missing_secret(&secret, &public));
            }
            let identity = Identity::generate(&mut OsRng);
            write_file(&secret, identity.to_secret_string().as_bytes(), 0o600)?;
            write_file(&public, identity.public().to_string().as_bytes(), 0o644)?;
            return Ok(identity);
        }
        protect_secret(&secret, IDENTITY_EXPOSED)?;
        let text = zeroize::Zeroizing::new(read_text(&secret)?);
        let identity: Identity = text.trim().parse().map_err(|e| HomeError::Invalid {
            path: secret.clone(),
            problem: format!(
                "not a valid identity ({e}); restore it from a backup (the node's address comes from it, so a new one would be a different node)"
            ),
        })?;
        if exists(&public)? {
            check_public(&public, &identity)?;
        } else {
            write_file(&public, identity.public().to_string().as_bytes(), 0o644)?;
        }
        Ok(identity)
    }

    /// Records the local API port for the CLI, and under ZeroTier's name for ZeroTier's
    /// tools pointed at this home (`zerotier-cli -D<home>` reads `zerotier-one.port` and
    /// `authtoken.secret` there, and fails without the port file). `skylan.port` comes
    /// last: its presence tells that the API serves.
    pub fn write_port(&self, port: u16) -> Result<(), HomeError> {
        for name in ["zerotier-one.port", "skylan.port"] {
            write_file(&self.path(name), port.to_string().as_bytes(), 0o644)?;
        }
        Ok(())
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

impl Home {
    /// Every moon in `moons.d/*.moon`, in file-name order. A file that cannot be read or
    /// does not verify, and a world that is not a moon, is skipped with a warning that
    /// names the file and why; a missing directory holds no moons.
    pub fn load_moons(&self) -> Vec<World> {
        self.moon_files()
            .into_iter()
            .filter_map(|(path, loaded)| match loaded {
                Ok(w) if w.kind == WorldKind::Moon => Some(w),
                Ok(w) => {
                    tracing::warn!(file = %path.display(), "skipped: a {} ({:016x}), not a moon", w.kind, w.id);
                    None
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), "skipped moon file: {e}");
                    None
                }
            })
            .collect()
    }

    /// Stores a world a node accepted, atomically: a moon as `moons.d/<16 hex id>.moon`
    /// (the directory is made if missing), the planet at `planet` (the file the node was
    /// started with). Returns the file written.
    pub fn save_world(&self, world: &World, planet: &Path) -> Result<PathBuf, HomeError> {
        let path = match world.kind {
            WorldKind::Planet => planet.to_path_buf(),
            WorldKind::Moon => {
                let dir = self.path(MOONS_DIR);
                fs::create_dir_all(&dir).map_err(|source| io_err(&dir, source))?;
                dir.join(world.moon_file_name())
            }
        };
        write_file(&path, world.to_json().as_bytes(), 0o644)?;
        Ok(path)
    }

    /// Removes every file of `moons.d` that holds moon `id`, whatever its name (after a
    /// deorbit, so the moon is not loaded again at the next start). Returns the files
    /// removed.
    pub fn remove_moon(&self, id: u64) -> Result<Vec<PathBuf>, HomeError> {
        let mut removed = Vec::new();
        for (path, loaded) in self.moon_files() {
            if loaded.is_ok_and(|w| w.kind == WorldKind::Moon && w.id == id) {
                fs::remove_file(&path).map_err(|source| io_err(&path, source))?;
                removed.push(path);
            }
        }
        Ok(removed)
    }

    /// Each `moons.d/*.moon` file, in name order, with what loading it gave.
    fn moon_files(&self) -> Vec<(PathBuf, Result<World, WorldError>)> {
        let dir = self.path(MOONS_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "cannot list the moon files: {e}");
                return Vec::new();
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == MOON_EXTENSION))
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|p| {
                let loaded = load_world(&p);
                (p, loaded)
            })
            .collect()
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

/// Makes sure the secret file `path` is readable and writable by its owner only. A
/// wider mode is changed to 0600 with a warning that names the file, its old mode and
/// `exposed` (what a reader could have done, and the remedy); when the mode cannot be
/// changed, the error says so and the daemon does not start with a secret others can
/// read. Changes nothing when the mode is already private.
pub fn protect_secret(path: &Path, exposed: &str) -> Result<(), HomeError> {
    let meta = fs::metadata(path).map_err(|source| io_err(path, source))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|e| {
        HomeError::Invalid {
            path: path.to_path_buf(),
            problem: format!(
                "is a secret but has mode {mode:04o}, and changing it to 0600 failed ({e}); fix it with `chmod 600 {}` (and check who could read it: {exposed})",
                path.display()
            ),
        }
    })?;
    tracing::warn!(
        file = %path.display(),
        "secret file had mode {mode:04o} (group or others had access); changed it to 0600: {exposed}"
    );
    Ok(())
}

/// Whether `path` exists; an error (other than "not found") names the file, so a
/// file that cannot be examined is never taken for a missing one.
fn exists(path: &Path) -> Result<bool, HomeError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(io_err(path, source)),
    }
}

/// The refusal when `identity.secret` is gone but `identity.public` says which node
/// this home belongs to.
fn missing_secret(secret: &Path, public: &Path) -> HomeError {
    let node = read_text(public)
        .ok()
        .and_then(|t| t.split(':').next().map(|a| a.trim().to_string()))
        .filter(|a| a.len() == 10 && a.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or_else(|| "a node".to_string(), |a| format!("node {a}"));
    HomeError::Invalid {
        path: secret.to_path_buf(),
        problem: format!(
            "is missing, but {} is here: this home directory belongs to {node}, and starting with a new identity would silently give the node a new address. Restore identity.secret from a backup; to start over as a new node on purpose, move {} away",
            public.display(),
            public.display()
        ),
    }
}

/// Checks that the existing `identity.public` is the public half of `identity`.
fn check_public(public: &Path, identity: &Identity) -> Result<(), HomeError> {
    let text = read_text(public)?;
    let ours = identity.public();
    let remedy = format!(
        "identity.secret (node {}) is what the node uses: if that is the right identity, delete {} and skylan writes it again; otherwise restore the matching identity.secret from a backup",
        ours.address(),
        public.display()
    );
    match text.trim().parse::<PublicIdentity>() {
        Ok(p) if p == *ours => Ok(()),
        Ok(p) => Err(HomeError::Invalid {
            path: public.to_path_buf(),
            problem: format!(
                "is the public identity of node {}, which does not match identity.secret; {remedy}",
                p.address()
            ),
        }),
        Err(e) => Err(HomeError::Invalid {
            path: public.to_path_buf(),
            problem: format!("is not a valid public identity ({e}); {remedy}"),
        }),
    }
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

/// (Tests of `io`) a moon of one root at 198.51.100.31/9993, revision `timestamp`, signed
/// by its root's identity (made once per test binary: the proof of work takes a while).
#[cfg(test)]
pub(crate) fn test_moon(timestamp: u64) -> World {
    test_world(WorldKind::Moon, timestamp)
}

/// [`test_moon`], or a planet of the same root.
#[cfg(test)]
pub(crate) fn test_world(kind: WorldKind, timestamp: u64) -> World {
    use rand_core::SeedableRng;
    static ROOT: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
    let root =
        ROOT.get_or_init(|| Identity::generate(&mut rand_chacha::ChaCha20Rng::from_seed([31; 32])));
    WorldTemplate {
        id: match kind {
            WorldKind::Moon => root.public().address().value(),
            WorldKind::Planet => crate::world::DEFAULT_PLANET_ID,
        },
        kind,
        roots: vec![crate::world::RootSpec {
            identity: root.public().clone(),
            endpoints: vec!["198.51.100.31/9993".parse().expect("a valid endpoint")],
        }],
        update_key: *root.public().signing_key(),
    }
    .sign(timestamp, root)
    .expect("a valid test moon")
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
    fn moons_are_stored_loaded_and_removed_and_bad_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::create(dir.path()).unwrap();
        assert!(home.load_moons().is_empty(), "no moons.d, no moons");

        let moon = test_moon(1_700_000_000_000);
        let planet = dir.path().join("planet");
        let path = home.save_world(&moon, &planet).unwrap();
        assert_eq!(path, home.path(MOONS_DIR).join(moon.moon_file_name()));
        assert!(!planet.exists(), "a moon is not the planet");
        assert_eq!(load_world(&path).unwrap(), moon);

        // Damaged, foreign and unrelated files are skipped; the moon still loads.
        let moons = home.path(MOONS_DIR);
        fs::write(moons.join("broken.moon"), "{").unwrap();
        let altered = moon
            .to_json()
            .replace("198.51.100.31/9993", "198.51.100.32/9993");
        fs::write(moons.join("altered.moon"), &altered).unwrap();
        fs::write(moons.join("notes.txt"), "not a moon").unwrap();
        assert_eq!(home.load_moons(), vec![moon.clone()]);

        // A newer revision replaces the file; removal takes every file of that moon.
        let newer = test_moon(1_700_000_000_001);
        home.save_world(&newer, &planet).unwrap();
        assert_eq!(home.load_moons(), vec![newer.clone()]);
        fs::copy(&path, moons.join("copy.moon")).unwrap();
        let removed = home.remove_moon(moon.id).unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(home.load_moons().is_empty());
        assert!(home.remove_moon(moon.id).unwrap().is_empty());
        assert!(moons.join("broken.moon").exists(), "other files stay");

        // A planet goes to the planet file the node was started with, and is not a moon.
        let planet_world = test_world(WorldKind::Planet, 1_700_000_000_002);
        assert_eq!(home.save_world(&planet_world, &planet).unwrap(), planet);
        assert_eq!(fs::read_to_string(&planet).unwrap(), planet_world.to_json());
        fs::copy(&planet, moons.join("planet.moon")).unwrap();
        assert!(
            home.load_moons().is_empty(),
            "a planet in moons.d is skipped"
        );
    }

    #[test]
    fn a_missing_secret_next_to_a_public_identity_is_refused_and_nothing_is_minted() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::create(dir.path()).unwrap();
        let old = home.load_or_create_identity().unwrap();
        fs::remove_file(home.path(IDENTITY_SECRET)).unwrap();
        let public_before = fs::read_to_string(home.path(IDENTITY_PUBLIC)).unwrap();
        let err = home.load_or_create_identity().unwrap_err().to_string();
        assert!(err.contains(IDENTITY_SECRET), "{err}");
        assert!(err.contains("is missing"), "{err}");
        assert!(err.contains(&old.public().address().to_string()), "{err}");
        assert!(err.contains("Restore identity.secret"), "{err}");
        assert!(
            !home.path(IDENTITY_SECRET).exists(),
            "no new identity written"
        );
        assert_eq!(
            fs::read_to_string(home.path(IDENTITY_PUBLIC)).unwrap(),
            public_before
        );
    }

    #[test]
    fn a_public_identity_of_another_node_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::create(&dir.path().join("a")).unwrap();
        let other = Home::create(&dir.path().join("b")).unwrap();
        let ours = home.load_or_create_identity().unwrap();
        let theirs = other.load_or_create_identity().unwrap();
        fs::copy(other.path(IDENTITY_PUBLIC), home.path(IDENTITY_PUBLIC)).unwrap();
        let err = home.load_or_create_identity().unwrap_err().to_string();
        assert!(
            err.starts_with(&home.path(IDENTITY_PUBLIC).display().to_string()),
            "{err}"
        );
        assert!(
            err.contains(&theirs.public().address().to_string()),
            "{err}"
        );
        assert!(err.contains(&ours.public().address().to_string()), "{err}");
        assert!(err.contains("does not match identity.secret"), "{err}");

        fs::write(home.path(IDENTITY_PUBLIC), "rubbish").unwrap();
        let err = home.load_or_create_identity().unwrap_err().to_string();
        assert!(err.contains("is not a valid public identity"), "{err}");

        // The remedy the message gives works: the public file is written again.
        fs::remove_file(home.path(IDENTITY_PUBLIC)).unwrap();
        let again = home.load_or_create_identity().unwrap();
        assert_eq!(again.public().address(), ours.public().address());
        let public = fs::read_to_string(home.path(IDENTITY_PUBLIC)).unwrap();
        assert_eq!(public, ours.public().to_string());
    }

    #[test]
    fn a_secret_with_a_wide_mode_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::create(dir.path()).unwrap();
        home.load_or_create_identity().unwrap();
        let secret = home.path(IDENTITY_SECRET);
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
        home.load_or_create_identity().unwrap();
        let mode = fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn corrupt_identity_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::create(dir.path()).unwrap();
        fs::write(home.path("identity.secret"), "garbage").unwrap();
        let err = home.load_or_create_identity().unwrap_err().to_string();
        assert!(err.contains("identity.secret"), "{err}");
    }

    #[test]
    fn an_empty_secret_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::create(dir.path()).unwrap();
        fs::write(home.path(IDENTITY_SECRET), "").unwrap();
        let err = home.load_or_create_identity().unwrap_err().to_string();
        assert!(err.contains(IDENTITY_SECRET), "{err}");
        assert_eq!(fs::read(home.path(IDENTITY_SECRET)).unwrap(), b"");
        assert!(!home.path(IDENTITY_PUBLIC).exists());
    }
}
