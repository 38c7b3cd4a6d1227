//! A throw-away PostgreSQL server for the tests of `--controller-db`: Debian's
//! `postgresql` package (installed by `.ci/run`), run as the `postgres` user (the
//! server refuses to run as root) from a fresh data directory, and stopped by its own
//! PID when the [`PgServer`] is dropped, also when the test fails.
//!
//! The server listens on a Unix socket in its directory, and on a lab host's address
//! when given one (it then runs inside that host's network namespace, so other hosts of
//! the lab reach it and nothing outside does). Over TCP it takes TLS connections only
//! (`hostssl`), with a certificate for the host's address from a CA made for the run
//! ([`PgServer::tls_url`] names it). Login is `skylan` with a password (SCRAM), database
//! `skylan`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use skylan::lab::LabHost;

use super::wait_until;

/// The role and database the tests use.
pub const USER: &str = "skylan";
/// Its password.
pub const PASSWORD: &str = "skylan-test-password";
/// The server's TCP port (each lab host has its own namespace).
pub const PG_PORT: u16 = 5432;

/// A running PostgreSQL server.
pub struct PgServer {
    /// The server's programs (`initdb`, `postgres`, `psql`).
    bin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    host: Option<LabHost>,
}

impl PgServer {
    /// Initializes a data directory and starts the server: on `host`'s address inside its
    /// namespace, or on the Unix socket only.
    pub fn start(host: Option<&LabHost>) -> Result<PgServer> {
        let bin = bin_dir()?;
        // The server runs as `postgres`, which must be able to reach its directory.
        let dir = tempfile::Builder::new()
            .prefix("skylan-pg-")
            .tempdir_in("/tmp")
            .context("creating the PostgreSQL directory")?;
        let data = dir.path().join("data");
        let pwfile = dir.path().join("password");
        std::fs::write(&pwfile, PASSWORD)?;
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path()))?;
        run(as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "-A", "scram-sha-256", "--no-sync", "--pwfile"])
            .arg(&pwfile))?;
        let listen = host.map_or(String::new(), |h| h.ip.to_string());
        let mut tls_settings = Vec::new();
        if let Some(h) = host {
            // The lab's hosts (and only they) may log in over TCP, over TLS, with the
            // password.
            let mut hba = std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("pg_hba.conf"))?;
            std::io::Write::write_all(
                &mut hba,
                b"hostssl all all 198.51.100.0/24 scram-sha-256\n",
            )?;
            make_certificates(dir.path(), &h.ip.to_string())?;
            let file = |name: &str| dir.path().join(name).display().to_string();
            tls_settings = vec![
                "ssl=on".to_string(),
                format!("ssl_cert_file={}", file("server.pem")),
                format!("ssl_key_file={}", file("server.key")),
            ];
        }
        let mut cmd = match host {
            Some(h) => {
                let mut c = h.command("setpriv");
                c.args(postgres_user()).arg(bin.join("postgres"));
                c
            }
            None => as_postgres(&bin.join("postgres")),
        };
        cmd.arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-p", &PG_PORT.to_string()])
            .args(["-c", &format!("listen_addresses={listen}")])
            .args(tls_settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("server.log"))?);
        let child = cmd.spawn().context("starting postgres")?;
        let mut server = PgServer {
            bin,
            dir,
            child: Some(child),
            host: host.cloned(),
        };
        server.wait_ready()?;
        server.sql("postgres", &format!("CREATE DATABASE {USER}"))?;
        Ok(server)
    }

    /// The connection string over the Unix socket (for processes on this machine's
    /// own namespace).
    pub fn socket_url(&self) -> String {
        format!(
            "host={} port={PG_PORT} user={USER} password={PASSWORD} dbname={USER}",
            self.dir.path().display()
        )
    }

    /// The connection string over TCP to the lab host's address.
    pub fn tcp_url(&self) -> Result<String> {
        let Some(host) = &self.host else {
            bail!("this server listens on its Unix socket only")
        };
        Ok(format!(
            "postgres://{USER}:{PASSWORD}@{}:{PG_PORT}/{USER}",
            host.ip
        ))
    }

    /// The connection string over TLS to the lab host's address, checking the server
    /// against the run's CA.
    pub fn tls_url(&self) -> Result<String> {
        Ok(format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            self.tcp_url()?,
            self.dir.path().join("ca.pem").display()
        ))
    }

    /// A CA certificate that did not sign the server's (for refusals).
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    /// Runs one SQL statement in `database` over the Unix socket; returns psql's output
    /// (unaligned, tuples only).
    pub fn sql(&self, database: &str, statement: &str) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .env("PGPASSWORD", PASSWORD)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &PG_PORT.to_string(),
                "-U",
                USER,
                "-d",
                database,
                "-c",
                statement,
            ])
            .output()
            .context("running psql")?;
        ensure!(
            out.status.success(),
            "psql -c {statement:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let result = wait_until(
            "PostgreSQL to accept connections",
            Duration::from_secs(30),
            || {
                if let Some(child) = self.child.as_mut()
                    && let Some(status) = child.try_wait()?
                {
                    bail!("postgres exited: {status}");
                }
                self.sql("postgres", "SELECT 1")
            },
        );
        result
            .map(|_| ())
            .with_context(|| format!("server log:\n{}", self.log()))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGINT is PostgreSQL's fast shutdown: sessions are ended, not waited for.
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: signalling our own child by its PID; it has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        for _ in 0..100 {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The directory of the newest installed PostgreSQL's programs.
fn bin_dir() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (apt-get install postgresql; .ci/run does)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("postgres").exists())
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => {
            bail!("no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)")
        }
    }
}

/// Makes `ca.pem` (a CA for this run), `server.pem`/`server.key` (signed by it, for
/// `ip`, the key readable by `postgres` only) and `other-ca.pem` (an unrelated CA) in
/// `dir`, with the `openssl` command.
fn make_certificates(dir: &Path, ip: &str) -> Result<()> {
    let openssl =
        |args: &[&str]| -> Result<()> { run(Command::new("openssl").current_dir(dir).args(args)) };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (name, cn) in [("ca", "skylan test CA"), ("other-ca", "another CA")] {
        let (key, pem, subject) = (
            format!("{name}.key"),
            format!("{name}.pem"),
            format!("/CN={cn}"),
        );
        let mut args = vec![
            "req", "-x509", "-days", "2", "-subj", &subject, "-keyout", &key, "-out", &pem,
        ];
        args.extend(ec);
        openssl(&args)?;
    }
    let subject = format!("/CN={ip}");
    let mut args = vec![
        "req",
        "-subj",
        &subject,
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ];
    args.extend(ec);
    openssl(&args)?;
    std::fs::write(
        dir.join("server.ext"),
        format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n"),
    )?;
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ])?;
    run(Command::new("chown")
        .arg("postgres:postgres")
        .arg(dir.join("server.key"))
        .arg(dir.join("server.pem")))?;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    Ok(())
}

/// `setpriv` arguments that become the `postgres` user.
fn postgres_user() -> [&'static str; 3] {
    ["--reuid=postgres", "--regid=postgres", "--init-groups"]
}

fn as_postgres(program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args(postgres_user()).arg(program);
    c
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
