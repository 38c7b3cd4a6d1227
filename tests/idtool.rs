//! `skylan idtool` end to end on temporary directories: identities, signatures,
//! planets (including revisions and key rollover) and moons.
// Tests and examples may use files, sockets, threads and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use skylan::cli::idtool::{IdtoolCommand, IdtoolError, run};
use skylan::crypto::{Identity, PublicIdentity, UpdateKey};
use skylan::io::home::load_world;
use skylan::world::{DEFAULT_PLANET_ID, WorldKind};

fn generate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let secret = dir.join(format!("{name}.secret"));
    let public = dir.join(format!("{name}.public"));
    let out = run(IdtoolCommand::Generate {
        secret_path: Some(secret.clone()),
        public_path: Some(public.clone()),
    })
    .unwrap();
    assert!(out.contains("secret written to"), "{out}");
    (secret, public)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn s(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn generate_getpublic_sign_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = generate(dir.path(), "identity");
    assert_eq!(mode(&secret), 0o600);

    let id: Identity = fs::read_to_string(&secret).unwrap().parse().unwrap();
    let pubfile: PublicIdentity = fs::read_to_string(&public).unwrap().parse().unwrap();
    assert_eq!(id.public(), &pubfile);

    let printed = run(IdtoolCommand::Getpublic { secret: s(&secret) }).unwrap();
    assert_eq!(printed.trim(), pubfile.to_string());
    // Inline identity strings work like files (zerotier-idtool's rule).
    let inline = fs::read_to_string(&secret).unwrap().trim().to_string();
    assert_eq!(
        run(IdtoolCommand::Getpublic { secret: inline }).unwrap(),
        printed
    );

    // Never overwrite a secret.
    let err = run(IdtoolCommand::Generate {
        secret_path: Some(secret.clone()),
        public_path: None,
    })
    .unwrap_err();
    assert!(matches!(err, IdtoolError::Exists { .. }), "{err}");

    // Sign and verify a file, with the public or the secret identity.
    let file = dir.path().join("release.tar");
    fs::write(&file, b"some release bytes").unwrap();
    let sig = run(IdtoolCommand::Sign {
        secret: s(&secret),
        file: file.clone(),
    })
    .unwrap();
    assert_eq!(sig.trim().len(), 128);
    for identity in [s(&public), s(&secret)] {
        run(IdtoolCommand::Verify {
            identity,
            file: file.clone(),
            signature: sig.clone(),
        })
        .unwrap();
    }
    // A changed file does not verify.
    fs::write(&file, b"some release bytez").unwrap();
    let err = run(IdtoolCommand::Verify {
        identity: s(&public),
        file: file.clone(),
        signature: sig.clone(),
    })
    .unwrap_err();
    assert!(matches!(err, IdtoolError::SignatureInvalid { .. }), "{err}");
    // A malformed signature is a usage error.
    let err = run(IdtoolCommand::Verify {
        identity: s(&public),
        file,
        signature: "abcd".into(),
    })
    .unwrap_err();
    assert!(matches!(err, IdtoolError::Usage(_)), "{err}");

    // validate knows identities.
    let out = run(IdtoolCommand::Validate {
        file: public.clone(),
    })
    .unwrap();
    assert!(out.contains("valid public identity"), "{out}");
    let out = run(IdtoolCommand::Validate { file: secret }).unwrap();
    assert!(out.contains("valid secret identity"), "{out}");

    // A corrupted identity file names the file.
    let text = fs::read_to_string(&public).unwrap();
    let broken = dir.path().join("broken.public");
    fs::write(&broken, text.replacen(&text[..10], "0123456789", 1)).unwrap();
    let err = run(IdtoolCommand::Validate {
        file: broken.clone(),
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("broken.public"), "{err}");
}

#[test]
fn generate_without_paths_prints_a_secret() {
    let out = run(IdtoolCommand::Generate {
        secret_path: None,
        public_path: None,
    })
    .unwrap();
    let id: Identity = out.parse().unwrap();
    assert!(out.starts_with(&id.address().to_string()));
}

#[test]
fn mkplanet_revisions_and_rollover() {
    let dir = tempfile::tempdir().unwrap();
    let (_, root_a) = generate(dir.path(), "a");
    let (_, root_b) = generate(dir.path(), "b");
    let planet = dir.path().join("planet");
    let key = dir.path().join("planet.key");

    let out = run(IdtoolCommand::Mkplanet {
        roots: vec![format!("{}@198.51.100.11/9993", s(&root_a))],
        out: planet.clone(),
        key: None,
        next_key: None,
        id: None,
    })
    .unwrap();
    assert!(out.contains("created update key"), "{out}");
    assert_eq!(mode(&key), 0o600);
    let v1 = load_world(&planet).unwrap();
    assert_eq!(v1.kind, WorldKind::Planet);
    assert_eq!(v1.id, DEFAULT_PLANET_ID);
    assert_eq!(v1.roots.len(), 1);
    let update_key: UpdateKey = fs::read_to_string(&key).unwrap().parse().unwrap();
    use skylan::crypto::Signer;
    assert_eq!(v1.signed_by, update_key.public_key());
    assert_eq!(v1.update_key, update_key.public_key());
    let out = run(IdtoolCommand::Validate {
        file: planet.clone(),
    })
    .unwrap();
    assert!(out.contains("198.51.100.11/9993"), "{out}");

    // Re-running with the same key (found next to the planet) adds a root and makes a
    // valid update.
    let out = run(IdtoolCommand::Mkplanet {
        roots: vec![
            format!("{}@198.51.100.11/9993", s(&root_a)),
            format!("{}@203.0.113.12/9993,2001:db8::12/9993", s(&root_b)),
        ],
        out: planet.clone(),
        key: None,
        next_key: None,
        id: None,
    })
    .unwrap();
    assert!(out.contains("will accept"), "{out}");
    let v2 = load_world(&planet).unwrap();
    assert!(v2.timestamp > v1.timestamp);
    assert_eq!(v2.roots.len(), 2);
    assert_eq!(v2.roots[1].endpoints.len(), 2);
    v1.accepts_update(&v2).unwrap();

    // Rollover: sign with the old key, hand over to a new one.
    let next = dir.path().join("next.key");
    run(IdtoolCommand::Mkplanet {
        roots: vec![format!("{}@198.51.100.11/9993", s(&root_a))],
        out: planet.clone(),
        key: Some(key.clone()),
        next_key: Some(next.clone()),
        id: None,
    })
    .unwrap();
    assert_eq!(mode(&next), 0o600);
    let v3 = load_world(&planet).unwrap();
    v2.accepts_update(&v3).unwrap();
    // The old key can no longer publish.
    let out = run(IdtoolCommand::Mkplanet {
        roots: vec![format!("{}@198.51.100.11/9993", s(&root_a))],
        out: planet.clone(),
        key: Some(key.clone()),
        next_key: None,
        id: None,
    })
    .unwrap();
    assert!(out.contains("will NOT accept"), "{out}");
    let v4 = load_world(&planet).unwrap();
    assert!(v3.accepts_update(&v4).is_err());

    // Errors name what is wrong.
    let err = run(IdtoolCommand::Mkplanet {
        roots: vec![format!("{}@198.51.100.11", s(&root_a))],
        out: planet.clone(),
        key: None,
        next_key: None,
        id: None,
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--root") && err.contains("198.51.100.11"),
        "{err}"
    );
    let err = run(IdtoolCommand::Mkplanet {
        roots: vec![format!("{}@198.51.100.11/9993", s(&root_a))],
        out: planet.clone(),
        key: Some(dir.path().join("missing.key")),
        next_key: None,
        id: None,
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("missing.key"), "{err}");

    // A custom id.
    let other = dir.path().join("other-planet");
    run(IdtoolCommand::Mkplanet {
        roots: vec![format!("{}@198.51.100.11/9993", s(&root_a))],
        out: other.clone(),
        key: None,
        next_key: None,
        id: Some("0x2a".into()),
    })
    .unwrap();
    assert_eq!(load_world(&other).unwrap().id, 42);
}

#[test]
fn initmoon_genmoon_validate() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = generate(dir.path(), "root");
    let root: PublicIdentity = fs::read_to_string(&public).unwrap().parse().unwrap();

    // Printed template.
    let printed = run(IdtoolCommand::Initmoon {
        public: s(&public),
        endpoints: vec!["192.0.2.7/9993".parse().unwrap()],
        out: None,
    })
    .unwrap();
    assert!(printed.contains("\"worldType\": \"moon\""), "{printed}");
    assert!(printed.contains(&root.to_string()), "{printed}");

    let template = dir.path().join("moon.json");
    run(IdtoolCommand::Initmoon {
        public: s(&public),
        endpoints: vec!["192.0.2.7/9993".parse().unwrap()],
        out: Some(template.clone()),
    })
    .unwrap();
    assert_eq!(fs::read_to_string(&template).unwrap(), printed);

    let out = run(IdtoolCommand::Genmoon {
        template: template.clone(),
        secret: s(&secret),
        out_dir: Some(dir.path().to_path_buf()),
    })
    .unwrap();
    let moon_path = dir.path().join(format!("000000{}.moon", root.address()));
    assert!(out.contains(&s(&moon_path)), "{out}");
    let moon = load_world(&moon_path).unwrap();
    assert_eq!(moon.kind, WorldKind::Moon);
    assert_eq!(moon.id, root.address().value());
    assert_eq!(&moon.signed_by, root.signing_key());

    // Signing again makes a newer revision the first one accepts.
    let out = run(IdtoolCommand::Genmoon {
        template: moon_path.clone(),
        secret: s(&secret),
        out_dir: Some(dir.path().to_path_buf()),
    })
    .unwrap();
    assert!(out.contains("will accept"), "{out}");
    let moon2 = load_world(&moon_path).unwrap();
    moon.accepts_update(&moon2).unwrap();

    let out = run(IdtoolCommand::Validate {
        file: moon_path.clone(),
    })
    .unwrap();
    assert!(out.contains("valid moon"), "{out}");

    // Tampering with the moon file is caught and the file is named.
    let text = fs::read_to_string(&moon_path).unwrap();
    fs::write(&moon_path, text.replace("192.0.2.7/9993", "192.0.2.8/9993")).unwrap();
    let err = run(IdtoolCommand::Validate {
        file: moon_path.clone(),
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("signature does not verify"), "{err}");
    assert!(err.contains(&s(&moon_path)), "{err}");

    // A template without endpoints cannot be signed, and says why.
    let bare = dir.path().join("bare.json");
    run(IdtoolCommand::Initmoon {
        public: s(&public),
        endpoints: vec![],
        out: Some(bare.clone()),
    })
    .unwrap();
    let err = run(IdtoolCommand::Genmoon {
        template: bare,
        secret: s(&secret),
        out_dir: Some(dir.path().to_path_buf()),
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("no stable endpoints"), "{err}");

    // A missing template names the file.
    let err = run(IdtoolCommand::Genmoon {
        template: dir.path().join("nope.json"),
        secret: s(&secret),
        out_dir: None,
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("nope.json"), "{err}");
}
