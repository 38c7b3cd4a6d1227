//! `skylan idtool`: identities and worlds, offline.
//!
//! Keeps `zerotier-idtool`'s habits: the same command names, `generate [secret]
//! [public]`, identities given either as a file path or inline (an argument longer than
//! 32 characters with `:` at index 10 is an identity string, anything else a path),
//! `initmoon` printing an editable JSON template and `genmoon` writing
//! `<16-hex-id>.moon`. New here: `mkplanet` builds a signed planet in one step and keeps
//! its update key next to it, and `validate` checks identities and world files.
//!
//! Contracts: [`run`] returns the text to print on success; every failure is an
//! [`IdtoolError`] that names the file and the problem (the caller prints it and exits
//! with status 1). Secret files are created with mode 0600 and never overwritten;
//! other files are replaced atomically (write to a temporary file, then rename).
//! The clock and OS randomness are read here, which is why this lives in `io`.
//!
//! Caller: `main.rs` (`skylan idtool ...`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use rand_core::OsRng;

use crate::crypto::{CryptoError, Identity, PublicIdentity, Signer, UpdateKey};
use crate::io::home::{load_world, load_world_template};
use crate::types::Endpoint;
use crate::world::{DEFAULT_PLANET_ID, RootSpec, World, WorldError, WorldKind, WorldTemplate};

/// What `idtool sign` signs: this tag followed by the file's bytes, so a file signature
/// can never be mistaken for a signature over a world or any other protocol object.
const FILE_SIGNATURE_TAG: &[u8] = b"skylan-idtool-sign-v1\0";

/// The `skylan idtool` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum IdtoolCommand {
    /// Generate a new identity (about half a second of CPU: the address has a proof of
    /// work). Without paths, print the secret identity.
    Generate {
        /// Write the secret identity here (mode 0600; an existing file is never
        /// overwritten).
        secret_path: Option<PathBuf>,
        /// Write the public identity here.
        public_path: Option<PathBuf>,
    },
    /// Print the public identity of a secret identity.
    Getpublic {
        /// Secret identity file (or the secret identity string itself).
        secret: String,
    },
    /// Sign a file with an identity; prints the signature (128 hex digits).
    Sign {
        /// Secret identity file (or string).
        secret: String,
        /// The file to sign.
        file: PathBuf,
    },
    /// Check a signature made by `sign`; exit status 0 if it is valid, 1 if not.
    Verify {
        /// Public or secret identity file (or string) of the signer.
        identity: String,
        /// The signed file.
        file: PathBuf,
        /// The signature printed by `sign`.
        signature: String,
    },
    /// Build and sign a planet (the default world) from root identities and endpoints.
    /// Re-run it with the same update key to publish a newer revision.
    Mkplanet {
        /// A root: its public identity file, `@`, and its endpoints
        /// (`identity.public@198.51.100.11/9993,2001:db8::11/9993`). Repeat per root.
        #[arg(
            long = "root",
            value_name = "PUBLIC_PATH@IP/PORT[,IP/PORT...]",
            required = true
        )]
        roots: Vec<String>,
        /// Where to write the planet (JSON).
        #[arg(long)]
        out: PathBuf,
        /// Update key to sign with. Default: `<out>.key`, created (mode 0600) if missing.
        /// Every later revision must be signed with the key named here.
        #[arg(long, value_name = "KEY_SECRET_PATH")]
        key: Option<PathBuf>,
        /// Hand future updates over to this key (created if missing) instead of keeping
        /// the signing key: a key rollover.
        #[arg(long, value_name = "KEY_SECRET_PATH")]
        next_key: Option<PathBuf>,
        /// Planet id: decimal, `0x` hex, or 16 hex digits as in the file
        /// [default: 0000736b796c616e]. Must stay the same across revisions.
        #[arg(long)]
        id: Option<String>,
    },
    /// Print (or write) an unsigned moon template for one root; edit it to add roots
    /// and endpoints, then sign it with `genmoon`.
    Initmoon {
        /// The moon's first root: its public identity file (or string). The moon's id
        /// is this root's address.
        public: String,
        /// A stable endpoint of this root (`ip/port`); repeat for several.
        #[arg(long = "endpoint", value_name = "IP/PORT")]
        endpoints: Vec<Endpoint>,
        /// Write the template here instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sign a moon template with a root's secret identity; writes `<16-hex-id>.moon`.
    Genmoon {
        /// The template (from `initmoon`, or a previous `.moon` file to revise).
        template: PathBuf,
        /// Secret identity that signs this revision: the key named by the previous
        /// revision's `updatesMustBeSignedBy` (for a new moon, its root's identity).
        #[arg(long)]
        secret: String,
        /// Directory to write the `.moon` file into [default: current directory].
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Check an identity file (public or secret) or a world file (planet or moon).
    Validate {
        /// The file to check.
        file: PathBuf,
    },
}

/// Why an idtool command failed. Each message names the file or argument at fault.
#[derive(Debug, thiserror::Error)]
pub enum IdtoolError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A secret file exists already.
    #[error("{path} already exists; refusing to overwrite a secret (move it away first)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// An identity or key is malformed or does not verify.
    #[error("{origin}: {source}")]
    Key {
        /// The file, or "identity argument" for an inline identity.
        origin: String,
        /// What is wrong with it.
        source: CryptoError,
    },
    /// A world file or template is wrong.
    #[error(transparent)]
    World(#[from] WorldError),
    /// A command-line value is wrong.
    #[error("{0}")]
    Usage(String),
    /// `verify` found the signature invalid.
    #[error(
        "signature is NOT valid: {file} was not signed by {address}, or was changed after signing"
    )]
    SignatureInvalid {
        /// The file.
        file: PathBuf,
        /// The identity it was checked against.
        address: String,
    },
}

/// Runs one idtool command and returns what to print (ending in a newline).
pub fn run(cmd: IdtoolCommand) -> Result<String, IdtoolError> {
    match cmd {
        IdtoolCommand::Generate {
            secret_path,
            public_path,
        } => generate(secret_path.as_deref(), public_path.as_deref()),
        IdtoolCommand::Getpublic { secret } => Ok(format!("{}\n", load_secret(&secret)?.public())),
        IdtoolCommand::Sign { secret, file } => {
            let identity = load_secret(&secret)?;
            let sig = identity.sign(&file_message(&read_bytes(&file)?));
            Ok(format!("{}\n", hex::encode(sig)))
        }
        IdtoolCommand::Verify {
            identity,
            file,
            signature,
        } => verify(&identity, &file, &signature),
        IdtoolCommand::Mkplanet {
            roots,
            out,
            key,
            next_key,
            id,
        } => mkplanet(
            &roots,
            &out,
            key.as_deref(),
            next_key.as_deref(),
            id.as_deref(),
        ),
        IdtoolCommand::Initmoon {
            public,
            endpoints,
            out,
        } => initmoon(&public, endpoints, out.as_deref()),
        IdtoolCommand::Genmoon {
            template,
            secret,
            out_dir,
        } => genmoon(&template, &secret, out_dir.as_deref()),
        IdtoolCommand::Validate { file } => validate(&file),
    }
}

fn generate(secret_path: Option<&Path>, public_path: Option<&Path>) -> Result<String, IdtoolError> {
    // Check before spending half a second on the proof of work.
    if let Some(path) = secret_path.filter(|p| p.exists()) {
        return Err(IdtoolError::Exists {
            path: path.to_path_buf(),
        });
    }
    let identity = Identity::generate(&mut OsRng);
    let Some(secret_path) = secret_path else {
        return Ok(format!("{}\n", identity.to_secret_string().as_str()));
    };
    write_secret(secret_path, identity.to_secret_string().as_bytes())?;
    let mut out = format!(
        "identity {}: secret written to {}",
        identity.address(),
        secret_path.display()
    );
    if let Some(public_path) = public_path {
        write_replacing(public_path, format!("{}\n", identity.public()).as_bytes())?;
        out.push_str(&format!(", public written to {}", public_path.display()));
    }
    out.push('\n');
    Ok(out)
}

fn verify(identity: &str, file: &Path, signature: &str) -> Result<String, IdtoolError> {
    let public = load_public(identity)?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(signature.trim(), &mut sig).map_err(|_| {
        IdtoolError::Usage(format!(
            "the signature must be 128 hex digits (as printed by `skylan idtool sign`), got {signature:?}"
        ))
    })?;
    match public.verify(&file_message(&read_bytes(file)?), &sig) {
        Ok(()) => Ok(format!(
            "signature valid: {} signed by {}\n",
            file.display(),
            public.address()
        )),
        Err(_) => Err(IdtoolError::SignatureInvalid {
            file: file.to_path_buf(),
            address: public.address().to_string(),
        }),
    }
}

fn mkplanet(
    root_args: &[String],
    out: &Path,
    key_path: Option<&Path>,
    next_key_path: Option<&Path>,
    id: Option<&str>,
) -> Result<String, IdtoolError> {
    let roots = root_args
        .iter()
        .map(|arg| parse_root_arg(arg))
        .collect::<Result<Vec<_>, _>>()?;
    let id = match id {
        Some(text) => parse_world_id(text)?,
        None => DEFAULT_PLANET_ID,
    };
    let mut report = String::new();
    let key_path = match key_path {
        Some(path) => path.to_path_buf(),
        None => sibling_with_suffix(out, ".key")?,
    };
    let key = load_or_create_key(&key_path, key_path_is_default(out, &key_path), &mut report)?;
    let next_key = match next_key_path {
        Some(path) => Some(load_or_create_key(path, true, &mut report)?),
        None => None,
    };
    let update_key = next_key.as_ref().unwrap_or(&key).public_key();

    let previous = previous_world(out, &mut report);
    let timestamp = next_timestamp(previous.as_ref());
    let world = WorldTemplate {
        id,
        kind: WorldKind::Planet,
        roots,
        update_key,
    }
    .sign(timestamp, &key)?;
    note_update(previous.as_ref(), &world, out, &mut report);
    write_replacing(out, world.to_json().as_bytes())?;
    report.push_str(&format!(
        "wrote planet {:016x} revision {} ({}) with {} root(s) to {}\n",
        world.id,
        world.timestamp,
        format_utc_millis(world.timestamp),
        world.roots.len(),
        out.display()
    ));
    let (keeper, keeper_path) = match (&next_key, next_key_path) {
        (Some(_), Some(path)) => ("next", path),
        _ => ("update", key_path.as_path()),
    };
    report.push_str(&format!(
        "{keeper} key: {} — keep it secret and backed up: every future revision of this \
         planet must be signed with it\n",
        keeper_path.display()
    ));
    Ok(report)
}

fn initmoon(
    public: &str,
    endpoints: Vec<Endpoint>,
    out: Option<&Path>,
) -> Result<String, IdtoolError> {
    let identity = load_public(public)?;
    let template = WorldTemplate {
        id: identity.address().value(),
        kind: WorldKind::Moon,
        update_key: *identity.signing_key(),
        roots: vec![RootSpec {
            identity,
            endpoints,
        }],
    };
    let json = template.to_json();
    match out {
        None => Ok(json),
        Some(path) => {
            write_replacing(path, json.as_bytes())?;
            Ok(format!(
                "wrote moon template {:016x} to {}; add roots and stableEndpoints, then run \
                 `skylan idtool genmoon {} --secret <root identity.secret>`\n",
                template.id,
                path.display(),
                path.display()
            ))
        }
    }
}

fn genmoon(
    template_path: &Path,
    secret: &str,
    out_dir: Option<&Path>,
) -> Result<String, IdtoolError> {
    let template = load_world_template(template_path)?;
    let signer = load_secret(secret)?;
    let out_dir = out_dir.unwrap_or(Path::new("."));
    let file_name = match template.kind {
        WorldKind::Moon => format!("{:016x}.moon", template.id),
        WorldKind::Planet => "planet".to_string(),
    };
    let out = out_dir.join(file_name);
    let mut report = String::new();
    let previous = previous_world(&out, &mut report);
    let world = template.sign(next_timestamp(previous.as_ref()), &signer)?;
    note_update(previous.as_ref(), &world, &out, &mut report);
    write_replacing(&out, world.to_json().as_bytes())?;
    report.push_str(&format!(
        "wrote {} {:016x} revision {} ({}) signed by {} to {}\n",
        world.kind,
        world.id,
        world.timestamp,
        format_utc_millis(world.timestamp),
        signer.address(),
        out.display()
    ));
    if world.update_key != signer.public_key() {
        report.push_str(&format!(
            "note: the next revision must be signed by the key {}\n",
            hex::encode(world.update_key)
        ));
    }
    Ok(report)
}

fn validate(file: &Path) -> Result<String, IdtoolError> {
    let text = read_text(file)?;
    let first = text.trim();
    if looks_like_identity(first) {
        let origin = file.display().to_string();
        let key_error = |source| IdtoolError::Key {
            origin: origin.clone(),
            source,
        };
        return if first.split(':').count() == 4 {
            let id: Identity = first.parse().map_err(key_error)?;
            Ok(format!(
                "{}: valid secret identity {}\n",
                file.display(),
                id.address()
            ))
        } else {
            let id: PublicIdentity = first.parse().map_err(key_error)?;
            Ok(format!(
                "{}: valid public identity {}\n",
                file.display(),
                id.address()
            ))
        };
    }
    let world = World::from_json(&text, &file.display().to_string())?;
    let mut out = format!(
        "{}: valid {} {:016x}, revision {} ({}), signed by {}\n",
        file.display(),
        world.kind,
        world.id,
        world.timestamp,
        format_utc_millis(world.timestamp),
        hex::encode(world.signed_by)
    );
    for root in &world.roots {
        let endpoints: Vec<String> = root.endpoints.iter().map(|e| e.to_string()).collect();
        out.push_str(&format!(
            "  root {} at {}\n",
            root.identity.address(),
            endpoints.join(", ")
        ));
    }
    out.push_str(&format!(
        "  the next revision must be signed by {}\n",
        hex::encode(world.update_key)
    ));
    Ok(out)
}

/// `PATH@ip/port[,ip/port...]` → a root.
fn parse_root_arg(arg: &str) -> Result<RootSpec, IdtoolError> {
    let usage = |problem: String| {
        IdtoolError::Usage(format!(
            "--root {arg:?}: {problem} (expected PUBLIC_PATH@IP/PORT[,IP/PORT...], e.g. \
             identity.public@198.51.100.11/9993)"
        ))
    };
    let (identity, endpoints) = arg
        .rsplit_once('@')
        .ok_or_else(|| usage("no '@' before the endpoints".to_string()))?;
    let identity = load_public(identity)?;
    let endpoints = endpoints
        .split(',')
        .map(|e| {
            e.trim()
                .parse::<Endpoint>()
                .map_err(|err| usage(err.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RootSpec {
        identity,
        endpoints,
    })
}

fn parse_world_id(text: &str) -> Result<u64, IdtoolError> {
    let parsed = if let Some(hex_digits) = text.strip_prefix("0x") {
        u64::from_str_radix(hex_digits, 16).ok()
    } else if text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        u64::from_str_radix(text, 16).ok()
    } else {
        text.parse().ok()
    };
    match parsed {
        Some(id) if id != 0 => Ok(id),
        _ => Err(IdtoolError::Usage(format!(
            "--id {text:?}: expected a non-zero number (decimal, 0x hex, or 16 hex digits)"
        ))),
    }
}

/// Loads an update key, or creates one (mode 0600) if `create` and it does not exist.
fn load_or_create_key(
    path: &Path,
    create: bool,
    report: &mut String,
) -> Result<UpdateKey, IdtoolError> {
    if create && !path.exists() {
        let key = UpdateKey::generate(&mut OsRng);
        write_secret(
            path,
            format!("{}\n", key.to_secret_string().as_str()).as_bytes(),
        )?;
        report.push_str(&format!("created update key {}\n", path.display()));
        return Ok(key);
    }
    let text = zeroize::Zeroizing::new(read_text(path)?);
    text.parse().map_err(|source| IdtoolError::Key {
        origin: path.display().to_string(),
        source,
    })
}

fn key_path_is_default(out: &Path, key_path: &Path) -> bool {
    sibling_with_suffix(out, ".key").is_ok_and(|p| p == key_path)
}

/// The world already at `path`, if it loads; a note in `report` if it exists but does not.
fn previous_world(path: &Path, report: &mut String) -> Option<World> {
    if !path.exists() {
        return None;
    }
    match load_world(path) {
        Ok(world) => Some(world),
        Err(e) => {
            report.push_str(&format!(
                "note: replacing {}, which did not load ({e})\n",
                path.display()
            ));
            None
        }
    }
}

/// Now in milliseconds, but always after the previous revision's timestamp.
fn next_timestamp(previous: Option<&World>) -> u64 {
    let now = crate::io::http::controller::wall_clock().as_millis();
    match previous {
        Some(p) => now.max(p.timestamp.saturating_add(1)),
        None => now,
    }
}

/// Says whether nodes holding `previous` will accept `world`.
fn note_update(previous: Option<&World>, world: &World, out: &Path, report: &mut String) {
    let Some(previous) = previous else {
        return;
    };
    match previous.accepts_update(world) {
        Ok(()) => report.push_str(&format!(
            "nodes holding revision {} of {} will accept this revision as an update\n",
            previous.timestamp,
            out.display()
        )),
        Err(e) => report.push_str(&format!(
            "warning: nodes holding the previous {} will NOT accept this one as an update: {e}\n",
            out.display()
        )),
    }
}

/// zerotier-idtool's rule: longer than 32 characters with ':' at index 10 is an
/// identity string; anything else is a path.
fn looks_like_identity(arg: &str) -> bool {
    arg.len() > 32 && arg.as_bytes().get(10) == Some(&b':')
}

fn load_secret(arg: &str) -> Result<Identity, IdtoolError> {
    let (text, origin) = identity_text(arg)?;
    text.parse()
        .map_err(|source| IdtoolError::Key { origin, source })
}

/// A public identity from a public or a secret identity (file or string).
fn load_public(arg: &str) -> Result<PublicIdentity, IdtoolError> {
    let (text, origin) = identity_text(arg)?;
    let result = if text.trim().split(':').count() == 4 {
        text.parse::<Identity>().map(|id| id.public().clone())
    } else {
        text.parse::<PublicIdentity>()
    };
    result.map_err(|source| IdtoolError::Key { origin, source })
}

/// The identity text of an argument (inline or file) and how to name it in errors.
fn identity_text(arg: &str) -> Result<(zeroize::Zeroizing<String>, String), IdtoolError> {
    if looks_like_identity(arg) {
        return Ok((
            zeroize::Zeroizing::new(arg.to_string()),
            "identity argument".to_string(),
        ));
    }
    let path = Path::new(arg);
    Ok((
        zeroize::Zeroizing::new(read_text(path)?),
        path.display().to_string(),
    ))
}

fn file_message(contents: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(FILE_SIGNATURE_TAG.len() + contents.len());
    msg.extend_from_slice(FILE_SIGNATURE_TAG);
    msg.extend_from_slice(contents);
    msg
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, IdtoolError> {
    fs::read(path).map_err(|source| IdtoolError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_text(path: &Path) -> Result<String, IdtoolError> {
    fs::read_to_string(path).map_err(|source| IdtoolError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `<path><suffix>` in the same directory.
fn sibling_with_suffix(path: &Path, suffix: &str) -> Result<PathBuf, IdtoolError> {
    let name = path
        .file_name()
        .ok_or_else(|| IdtoolError::Usage(format!("{} is not a file path", path.display())))?;
    let mut name = name.to_os_string();
    name.push(suffix);
    Ok(path.with_file_name(name))
}

/// Creates a new file with mode 0600; never overwrites.
fn write_secret(path: &Path, contents: &[u8]) -> Result<(), IdtoolError> {
    let write_error = |source| IdtoolError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                IdtoolError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                write_error(e)
            }
        })?;
    file.write_all(contents).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

/// Replaces `path` atomically: a temporary file in the same directory, then rename.
fn write_replacing(path: &Path, contents: &[u8]) -> Result<(), IdtoolError> {
    let write_error = |source| IdtoolError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = sibling_with_suffix(path, &format!(".tmp-{}", std::process::id()))?;
    let result = fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(contents)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_error)
}

/// `2023-11-14T22:13:20.000Z` for milliseconds since the Unix epoch.
fn format_utc_millis(ms: u64) -> String {
    let (year, month, day, secs) = super::table::civil_utc(ms);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: IdtoolCommand,
    }

    #[test]
    fn command_line_matches_the_reference_invocations() {
        use clap::{CommandFactory, Parser};
        Cli::command().debug_assert();
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.cmd);
        assert!(matches!(
            parse(&[
                "idtool",
                "generate",
                "d/identity.secret",
                "d/identity.public"
            ]),
            Ok(IdtoolCommand::Generate {
                secret_path: Some(_),
                public_path: Some(_)
            })
        ));
        let Ok(IdtoolCommand::Mkplanet {
            roots, out, key, ..
        }) = parse(&[
            "idtool",
            "mkplanet",
            "--root",
            "d/identity.public@198.51.100.11/9993",
            "--root",
            "e/identity.public@203.0.113.12/9993,198.51.100.12/9993",
            "--out",
            "planet",
        ])
        else {
            panic!("mkplanet did not parse");
        };
        assert_eq!(roots.len(), 2);
        assert_eq!(out, PathBuf::from("planet"));
        assert!(key.is_none());
        assert!(
            parse(&["idtool", "mkplanet", "--out", "planet"]).is_err(),
            "--root is required"
        );
        let Ok(IdtoolCommand::Initmoon { endpoints, .. }) = parse(&[
            "idtool",
            "initmoon",
            "identity.public",
            "--endpoint",
            "192.0.2.7/9993",
            "--endpoint",
            "192.0.2.8:9993",
        ]) else {
            panic!("initmoon did not parse");
        };
        assert_eq!(endpoints.len(), 2);
        assert!(parse(&["idtool", "initmoon", "x", "--endpoint", "192.0.2.7"]).is_err());
        assert!(matches!(
            parse(&[
                "idtool",
                "genmoon",
                "moon.json",
                "--secret",
                "identity.secret"
            ]),
            Ok(IdtoolCommand::Genmoon { out_dir: None, .. })
        ));
        assert!(matches!(
            parse(&["idtool", "verify", "identity.public", "file", "00"]),
            Ok(IdtoolCommand::Verify { .. })
        ));
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_utc_millis(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            format_utc_millis(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn world_ids_parse_in_three_forms() {
        assert_eq!(parse_world_id("42").unwrap(), 42);
        assert_eq!(parse_world_id("0x2a").unwrap(), 42);
        assert_eq!(parse_world_id("000000000000002a").unwrap(), 42);
        assert!(parse_world_id("0").is_err());
        assert!(parse_world_id("x").is_err());
    }

    #[test]
    fn identity_arguments_follow_zerotier_rule() {
        assert!(!looks_like_identity("identity.public"));
        assert!(!looks_like_identity("/var/lib/skylan/identity.secret"));
        assert!(looks_like_identity(&format!(
            "89e92ceee5:1:{}",
            "00".repeat(64)
        )));
    }

    #[test]
    fn root_arguments_report_what_is_wrong() {
        let err = parse_root_arg("identity.public").unwrap_err().to_string();
        assert!(err.contains("no '@'"), "{err}");
        let err = parse_root_arg("/nonexistent/identity.public@198.51.100.1/9993")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/identity.public"), "{err}");
    }
}
