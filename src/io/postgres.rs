//! The controller's storage on PostgreSQL (`skylan node --controller --controller-db
//! postgres://...`), and the lock that lets a second controller stand by.
//!
//! [`PgStore`] implements [`Store`] with the same contract as the embedded
//! [`RedbStore`](crate::controller::RedbStore) (see `controller::store`): a write is one
//! PostgreSQL transaction, committed with `synchronous_commit = on` before `write`
//! returns, so an acknowledged API write is on the server's disk; readers see the last
//! committed state; revisions, the IP allocation index, referential integrity and the
//! audit log behave the same.
//!
//! # One serves, the others stand by
//! Every controller process holds one session-level advisory lock while it serves: key
//! [`lock_key`] of the controller's node address, taken on the connection that makes
//! every write. [`PgStore::open`] does not return until it holds the lock, so a second
//! process started with the same identity and database waits (logging once that it
//! stands by) and serves nothing: no node, no API. When the serving process dies, the
//! server ends its session (at once when the process is killed; after the TCP keepalive
//! settings below, about 9 s, when its machine or network is gone), the lock is free,
//! and the waiting process takes it within [`LOCK_POLL`] and starts.
//!
//! A process that loses its writing connection reconnects and takes the lock again
//! before it writes anything. If another process holds the lock by then, this one has
//! been replaced: it logs that and exits with status 1 (its service manager restarts
//! it, and it waits as the standby). No write is ever made without holding the lock.
//!
//! # Tables
//! All names start with `skylan_`; records are the same JSON as in the embedded
//! database, as `jsonb` (so `SELECT body->>'name' FROM skylan_members` works). Node
//! addresses are stored as their 40-bit value; network IDs with the top bit flipped
//! (`nwid ^ 2^63` as `bigint`), which keeps their order.
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `skylan_networks` | `nwid` | `body`: `Network` |
//! | `skylan_members` | `(nwid, address)` | `body`: `Member` |
//! | `skylan_ip_index` | `(nwid, ip inet)` | `member` |
//! | `skylan_bridges` | `(nwid, address)` | authorized active bridges |
//! | `skylan_audit` | `seq` | `body`: `AuditEntry` |
//! | `skylan_meta` | `name` | `value`: `schema_version`, `audit_seq` |
//!
//! # Connections
//! Plain TCP, a Unix socket (`host=/run/postgresql`), or TLS (rustls): with
//! `sslmode=require`, `verify-ca` or `verify-full` in the connection string the
//! connection is encrypted and the server's certificate is always checked, chain and
//! name (the host name or IP address in the string), against the CA certificates in
//! the PEM file `sslrootcert=PATH` names, or the system's roots without it (libpq's
//! `require` alone would not check; here every TLS mode is `verify-full`). `prefer`
//! (the default) and `disable` connect without TLS. A server that does not offer TLS,
//! or a certificate that does not check out, fails the connection with the reason.
//!
//! Calls block: the controller's callers run them on blocking threads (the API's
//! blocking pool, the controller thread), never on an async worker.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use postgres::config::SslMode;
use postgres::types::Json;
use postgres::{Client, Config, GenericClient, NoTls, Row};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::controller::store::{AUDIT_RETAIN, SCHEMA_VERSION, ip_conflict, released_ips};
use crate::controller::{AuditEntry, ControllerError, Member, Network, Store, StoreTxn};
use crate::types::{NetworkId, NodeAddress};

/// How often a standby tries for the lock, and the serving process checks that its
/// connection (and so its lock) is alive.
pub const LOCK_POLL: Duration = Duration::from_secs(1);
/// How long connecting may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The advisory lock key of the controller with node address `address`: `"sky"` in
/// the top 24 bits, the address in the low 40.
pub fn lock_key(address: NodeAddress) -> i64 {
    ((0x736b79u64 << 40) | address.value()) as i64
}

/// Checks a `--controller-db` value: a `postgres://` or `postgresql://` URL (or
/// libpq's `key=value` form) that the client can use, its CA file included. Returns
/// it unchanged.
pub fn parse_url(url: &str) -> Result<String, String> {
    target(url)?;
    Ok(url.to_string())
}

/// Where to connect and how: the client's settings, and the TLS connector when the
/// connection string asks for TLS (see the module documentation).
struct Target {
    config: Config,
    tls: Option<MakeRustlsConnect>,
}

/// Reads a connection string. `sslrootcert` and the `verify-ca`/`verify-full` modes,
/// which the client library does not know, are taken out first.
fn target(url: &str) -> Result<Target, String> {
    let (rest, root_file, verify) = take_tls_options(url);
    let config: Config = rest.parse().map_err(|e| {
        format!("not a PostgreSQL connection string ({e}); expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
    })?;
    if config.get_hosts().is_empty() {
        return Err("the connection string names no host; add @HOST (or host=/run/postgresql for a local socket)".into());
    }
    let wants_tls = verify || config.get_ssl_mode() == SslMode::Require;
    if root_file.is_some() && !wants_tls {
        return Err(
            "sslrootcert is given but TLS is not asked for; add sslmode=verify-full".into(),
        );
    }
    let tls = wants_tls
        .then(|| tls_connector(root_file.as_deref()))
        .transpose()?;
    Ok(Target { config, tls })
}

/// Splits `sslrootcert=PATH` off a connection string (URL query or `key=value` form)
/// and turns `sslmode=verify-ca|verify-full` into `sslmode=require`; returns the rest,
/// the path and whether a verify mode was named.
fn take_tls_options(url: &str) -> (String, Option<String>, bool) {
    let mut root_file = None;
    let mut verify = false;
    let mut keep = |option: &str| -> bool {
        match option.split_once('=') {
            Some(("sslrootcert", path)) => {
                root_file = Some(path.to_string());
                false
            }
            Some(("sslmode", "verify-ca" | "verify-full")) => {
                verify = true;
                false
            }
            _ => true,
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let mut kept: Vec<&str> = query.split('&').filter(|o| keep(o)).collect();
                if verify {
                    kept.push("sslmode=require");
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_string(),
        }
    } else {
        let mut kept: Vec<&str> = url.split_whitespace().filter(|o| keep(o)).collect();
        if verify {
            kept.push("sslmode=require");
        }
        kept.join(" ")
    };
    (rest, root_file, verify)
}

/// A TLS connector that checks the server against the CA certificates in `root_file`
/// (PEM), or the system's roots.
fn tls_connector(root_file: Option<&str>) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    match root_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("reading the CA certificates in sslrootcert={path}: {e}"))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert={path} holds no usable CA certificate (PEM, BEGIN CERTIFICATE)"
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("TLS was asked for, but the system has no CA certificates to check the server with; name the database's CA with sslrootcert=PATH".into());
            }
        }
    }
    // The crate's one provider (ring, built without a C toolchain for aws-lc).
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The connection string without its password, for logs and errors.
pub fn describe(config: &Config) -> String {
    let host = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("")
    )
}

/// The PostgreSQL-backed [`Store`].
pub struct PgStore {
    shared: Arc<Shared>,
}

struct Shared {
    config: Config,
    /// The TLS connector, when the connection string asks for TLS.
    tls: Option<MakeRustlsConnect>,
    /// `postgres://user@host:port/db`, for messages.
    shown: String,
    key: i64,
    /// The connection that holds the lock and makes every write (`None` while lost).
    writer: Mutex<Option<Client>>,
    /// The connection reads use, so they never wait behind a write.
    reader: Mutex<Option<Client>>,
    /// Set when the store is dropped: the lock is given up, not taken again.
    closed: AtomicBool,
}

impl PgStore {
    /// Connects to the database at `url`, waits until this process holds the lock of
    /// controller `address` (a standby waits here while another process serves),
    /// creates the tables when they are missing and checks the schema version, then
    /// starts the thread that watches the lock. Blocks; run it on a blocking thread.
    pub fn open(url: &str, address: NodeAddress) -> Result<PgStore, ControllerError> {
        let Target { mut config, tls } =
            target(url).map_err(|e| ControllerError::storage("reading --controller-db", e))?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(2);
        let shared = Arc::new(Shared {
            shown: format!(
                "{}{}",
                describe(&config),
                if tls.is_some() { " (TLS)" } else { "" }
            ),
            config,
            tls,
            key: lock_key(address),
            writer: Mutex::new(None),
            reader: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        *lock(&shared.writer) = Some(shared.connect_holding_lock(address)?);
        init(&mut lock(&shared.writer))?;
        *lock(&shared.reader) = Some(shared.connect()?);
        let watched = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("skylan-db-lock".into())
            .spawn(move || Shared::watch(&watched))
            .map_err(|e| ControllerError::storage("starting the database lock watch", e))?;
        tracing::info!(database = %shared.shown, "serving the controller from PostgreSQL; this process holds the controller lock");
        Ok(PgStore { shared })
    }

    /// The database, without its password.
    pub fn describe(&self) -> &str {
        &self.shared.shown
    }
}

impl Shared {
    /// A new connection with the session settings every connection uses.
    fn connect(&self) -> Result<Client, ControllerError> {
        let connected = match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        };
        let mut client = connected.map_err(|e| {
            let what = match self.tls {
                Some(_) => "connecting to the controller database over TLS",
                None => "connecting to the controller database",
            };
            ControllerError::storage(what, pg(&e))
        })?;
        // Acknowledged means on disk whatever the server's default; a dead client's
        // session (and lock) ends after ~9 s of silence.
        client
            .batch_execute(
                "SET synchronous_commit = on; SET client_min_messages = warning; \
                 SET tcp_keepalives_idle = 5; \
                 SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 2",
            )
            .map_err(|e| ControllerError::storage("setting up the database session", pg(&e)))?;
        Ok(client)
    }

    /// Connects and waits for the lock; says once that it stands by.
    fn connect_holding_lock(&self, address: NodeAddress) -> Result<Client, ControllerError> {
        let mut client = self.connect()?;
        let mut said = false;
        loop {
            match try_lock(&mut client, self.key) {
                Ok(true) => return Ok(client),
                Ok(false) if !said => {
                    tracing::info!(database = %self.shown, controller = %address, "another controller process with this identity holds the lock on the database; standing by to take over when it stops");
                    said = true;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(database = %self.shown, "waiting for the controller lock: {e}; connecting again");
                    std::thread::sleep(LOCK_POLL);
                    client = self.connect()?;
                    continue;
                }
            }
            std::thread::sleep(LOCK_POLL);
        }
    }

    /// The writing connection, reconnected (and the lock taken again) if it was lost.
    /// Exits the process if another process took the lock meanwhile.
    fn writer(&self) -> Result<MutexGuard<'_, Option<Client>>, ControllerError> {
        let mut guard = lock(&self.writer);
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            if self.closed.load(Ordering::Acquire) {
                return Err(ControllerError::storage("writing", "the store is closed"));
            }
            let mut client = self.connect()?;
            match try_lock(&mut client, self.key) {
                Ok(true) => {
                    tracing::warn!(database = %self.shown, "the connection to the controller database was lost; reconnected and holding the lock again");
                    *guard = Some(client);
                }
                Ok(false) => replaced(&self.shown),
                Err(e) => return Err(ControllerError::storage("taking the controller lock", e)),
            }
        }
        Ok(guard)
    }

    /// The reading connection, reconnected if it was lost.
    fn reader(&self) -> Result<MutexGuard<'_, Option<Client>>, ControllerError> {
        let mut guard = lock(&self.reader);
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            *guard = Some(self.connect()?);
        }
        Ok(guard)
    }

    /// Checks the writing connection every [`LOCK_POLL`] until the store is dropped; a
    /// dead one is replaced (and the lock taken again) or the process exits (see
    /// [`Shared::writer`]).
    fn watch(shared: &Weak<Shared>) {
        loop {
            std::thread::sleep(LOCK_POLL);
            let Some(s) = shared.upgrade() else { return };
            if s.closed.load(Ordering::Acquire) {
                return;
            }
            let alive = lock(&s.writer)
                .as_mut()
                .is_some_and(|client| client.is_valid(LOCK_POLL * 5).is_ok());
            if alive {
                continue;
            }
            // Close it, so `writer` reconnects.
            *lock(&s.writer) = None;
            if let Err(e) = s.writer() {
                tracing::warn!(database = %s.shown, "the controller database is unreachable: {e}; trying again");
            }
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // A client owns a small runtime, which must not be dropped on an async worker
        // thread: let a plain thread drop the connections.
        self.shared.closed.store(true, Ordering::Release);
        let writer = lock(&self.shared.writer).take();
        let reader = lock(&self.shared.reader).take();
        let _ = std::thread::spawn(move || drop((writer, reader))).join();
    }
}

/// Another process holds the lock: this one must stop serving at once.
fn replaced(shown: &str) -> ! {
    tracing::error!(database = %shown, "another controller process took the controller lock while this one was cut off from the database; stopping (a restart makes this process the standby)");
    std::process::exit(1)
}

fn try_lock(client: &mut Client, key: i64) -> Result<bool, String> {
    client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .and_then(|row| row.try_get(0))
        .map_err(|e| pg(&e))
}

/// Locks a mutex; a poisoned one (a panic while holding it) is used as it is, because
/// the connection inside is checked before every use anyway.
fn lock(m: &Mutex<Option<Client>>) -> MutexGuard<'_, Option<Client>> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A PostgreSQL error as one line: the server's message when there is one.
fn pg(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// Maps a PostgreSQL error to `ControllerError::Storage` with a context.
trait Context<T> {
    fn ctx(self, context: &'static str) -> Result<T, ControllerError>;
}

impl<T> Context<T> for Result<T, postgres::Error> {
    fn ctx(self, context: &'static str) -> Result<T, ControllerError> {
        self.map_err(|e| ControllerError::storage(context, pg(&e)))
    }
}

/// Creates missing tables and checks the schema version, in one transaction.
fn init(writer: &mut Option<Client>) -> Result<(), ControllerError> {
    let ctx = "creating tables";
    let client = connected(writer)?;
    let mut tx = client.transaction().ctx(ctx)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS skylan_meta (name text PRIMARY KEY, value bigint NOT NULL);
         CREATE TABLE IF NOT EXISTS skylan_networks (nwid bigint PRIMARY KEY, body jsonb NOT NULL);
         CREATE TABLE IF NOT EXISTS skylan_members (nwid bigint NOT NULL, address bigint NOT NULL,
             body jsonb NOT NULL, PRIMARY KEY (nwid, address));
         CREATE TABLE IF NOT EXISTS skylan_ip_index (nwid bigint NOT NULL, ip inet NOT NULL,
             member bigint NOT NULL, PRIMARY KEY (nwid, ip));
         CREATE TABLE IF NOT EXISTS skylan_bridges (nwid bigint NOT NULL, address bigint NOT NULL,
             PRIMARY KEY (nwid, address));
         CREATE TABLE IF NOT EXISTS skylan_audit (seq bigint PRIMARY KEY, body jsonb NOT NULL);
         INSERT INTO skylan_meta VALUES ('audit_seq', 0) ON CONFLICT DO NOTHING;",
    )
    .ctx(ctx)?;
    let version = i64::try_from(SCHEMA_VERSION).unwrap_or(i64::MAX);
    tx.execute(
        "INSERT INTO skylan_meta VALUES ('schema_version', $1) ON CONFLICT DO NOTHING",
        &[&version],
    )
    .ctx(ctx)?;
    let stored: i64 = tx
        .query_one(
            "SELECT value FROM skylan_meta WHERE name = 'schema_version'",
            &[],
        )
        .and_then(|r| r.try_get(0))
        .ctx(ctx)?;
    if stored > version {
        return Err(ControllerError::storage(
            "opening the controller database",
            format!(
                "it has schema version {stored}, newer than this skylan understands ({SCHEMA_VERSION}); upgrade skylan"
            ),
        ));
    }
    tx.commit().ctx(ctx)
}

fn connected(slot: &mut Option<Client>) -> Result<&mut Client, ControllerError> {
    slot.as_mut().ok_or_else(|| {
        ControllerError::storage(
            "using the controller database",
            "the connection is closed; it is reopened on the next call",
        )
    })
}

/// `nwid` as an order-keeping `bigint`.
fn nwid_key(nwid: NetworkId) -> i64 {
    (nwid.value() ^ (1 << 63)) as i64
}

fn nwid_from_key(key: i64) -> Result<NetworkId, ControllerError> {
    NetworkId::from_u64(key as u64 ^ (1 << 63))
        .map_err(|e| ControllerError::storage("reading a key", e))
}

fn addr_key(address: NodeAddress) -> i64 {
    address.value() as i64
}

fn addr_from_key(key: i64) -> Result<NodeAddress, ControllerError> {
    NodeAddress::new(key as u64).map_err(|e| ControllerError::storage("reading a key", e))
}

fn body<T: serde::de::DeserializeOwned>(row: &Row, what: &str) -> Result<T, ControllerError> {
    row.try_get::<_, Json<T>>("body")
        .map(|Json(v)| v)
        .map_err(|e| {
            ControllerError::storage(
                "reading a record",
                format!("{what} is unreadable: {}", pg(&e)),
            )
        })
}

// Reads shared by the reading connection and write transactions.

fn get_network(
    c: &mut impl GenericClient,
    nwid: NetworkId,
) -> Result<Option<Network>, ControllerError> {
    c.query_opt(
        "SELECT body FROM skylan_networks WHERE nwid = $1",
        &[&nwid_key(nwid)],
    )
    .ctx("reading a network")?
    .map(|row| body(&row, &format!("network {nwid}")))
    .transpose()
}

fn get_member(
    c: &mut impl GenericClient,
    nwid: NetworkId,
    address: NodeAddress,
) -> Result<Option<Member>, ControllerError> {
    c.query_opt(
        "SELECT body FROM skylan_members WHERE nwid = $1 AND address = $2",
        &[&nwid_key(nwid), &addr_key(address)],
    )
    .ctx("reading a member")?
    .map(|row| body(&row, &format!("member {address} of {nwid}")))
    .transpose()
}

fn list_networks(c: &mut impl GenericClient) -> Result<Vec<NetworkId>, ControllerError> {
    c.query("SELECT nwid FROM skylan_networks ORDER BY nwid", &[])
        .ctx("listing networks")?
        .iter()
        .map(|row| nwid_from_key(row.try_get(0).ctx("listing networks")?))
        .collect()
}

fn list_members_after(
    c: &mut impl GenericClient,
    nwid: NetworkId,
    after: Option<NodeAddress>,
    limit: usize,
) -> Result<Vec<Member>, ControllerError> {
    let after = after.map_or(-1, addr_key);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    c.query(
        "SELECT address, body FROM skylan_members WHERE nwid = $1 AND address > $2 \
         ORDER BY address LIMIT $3",
        &[&nwid_key(nwid), &after, &limit],
    )
    .ctx("listing members")?
    .iter()
    .map(|row| {
        let address: i64 = row.try_get("address").ctx("listing members")?;
        body(row, &format!("member {address:010x} of {nwid}"))
    })
    .collect()
}

fn list_bridges(
    c: &mut impl GenericClient,
    nwid: NetworkId,
) -> Result<Vec<NodeAddress>, ControllerError> {
    c.query(
        "SELECT address FROM skylan_bridges WHERE nwid = $1 ORDER BY address",
        &[&nwid_key(nwid)],
    )
    .ctx("listing bridges")?
    .iter()
    .map(|row| addr_from_key(row.try_get(0).ctx("listing bridges")?))
    .collect()
}

impl PgStore {
    /// Runs a read on the reading connection.
    fn read<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, ControllerError>,
    ) -> Result<T, ControllerError> {
        let mut guard = self.shared.reader()?;
        let result = f(connected(&mut guard)?);
        if guard.as_ref().is_some_and(Client::is_closed) {
            *guard = None;
        }
        result
    }
}

impl Store for PgStore {
    fn network_ids(&self) -> Result<Vec<NetworkId>, ControllerError> {
        self.read(list_networks)
    }

    fn network(&self, nwid: NetworkId) -> Result<Option<Network>, ControllerError> {
        self.read(|c| get_network(c, nwid))
    }

    fn member(
        &self,
        nwid: NetworkId,
        address: NodeAddress,
    ) -> Result<Option<Member>, ControllerError> {
        self.read(|c| get_member(c, nwid, address))
    }

    fn members(&self, nwid: NetworkId) -> Result<Vec<Member>, ControllerError> {
        self.read(|c| list_members_after(c, nwid, None, usize::MAX))
    }

    fn members_after(
        &self,
        nwid: NetworkId,
        after: Option<NodeAddress>,
        limit: usize,
    ) -> Result<Vec<Member>, ControllerError> {
        self.read(|c| list_members_after(c, nwid, after, limit))
    }

    fn active_bridges(&self, nwid: NetworkId) -> Result<Vec<NodeAddress>, ControllerError> {
        self.read(|c| list_bridges(c, nwid))
    }

    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, ControllerError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            c.query(
                "SELECT seq, body FROM skylan_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &limit],
            )
            .ctx("reading the audit log")?
            .iter()
            .map(|row| {
                let seq: i64 = row.try_get("seq").ctx("reading the audit log")?;
                body(row, &format!("audit entry {seq}"))
            })
            .collect()
        })
    }

    fn write(
        &self,
        f: &mut dyn FnMut(&mut dyn StoreTxn) -> Result<(), ControllerError>,
    ) -> Result<(), ControllerError> {
        let mut guard = self.shared.writer()?;
        let result = (|| {
            let client = connected(&mut guard)?;
            let mut tx = client.transaction().ctx("starting a write")?;
            // On error the transaction is dropped here, which rolls it back.
            f(&mut PgTxn {
                tx: RefCell::new(&mut tx),
            })?;
            tx.commit().ctx("committing")
        })();
        if guard.as_ref().is_some_and(Client::is_closed) {
            *guard = None;
        }
        result
    }
}

/// A [`StoreTxn`] over one PostgreSQL transaction.
struct PgTxn<'a, 'c> {
    tx: RefCell<&'a mut postgres::Transaction<'c>>,
}

impl PgTxn<'_, '_> {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, ControllerError>,
    ) -> Result<T, ControllerError> {
        let mut tx = self.tx.borrow_mut();
        f(&mut tx)
    }

    fn exec(
        &self,
        context: &'static str,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<u64, ControllerError> {
        self.with(|tx| tx.execute(sql, params).ctx(context))
    }
}

impl StoreTxn for PgTxn<'_, '_> {
    fn network_ids(&self) -> Result<Vec<NetworkId>, ControllerError> {
        self.with(|tx| list_networks(tx))
    }

    fn members(&self, nwid: NetworkId) -> Result<Vec<Member>, ControllerError> {
        self.with(|tx| list_members_after(tx, nwid, None, usize::MAX))
    }

    fn network(&self, nwid: NetworkId) -> Result<Option<Network>, ControllerError> {
        self.with(|tx| get_network(tx, nwid))
    }

    fn member(
        &self,
        nwid: NetworkId,
        address: NodeAddress,
    ) -> Result<Option<Member>, ControllerError> {
        self.with(|tx| get_member(tx, nwid, address))
    }

    fn active_bridges(&self, nwid: NetworkId) -> Result<Vec<NodeAddress>, ControllerError> {
        self.with(|tx| list_bridges(tx, nwid))
    }

    fn ip_owner(
        &self,
        nwid: NetworkId,
        ip: IpAddr,
    ) -> Result<Option<NodeAddress>, ControllerError> {
        let ctx = "reading the allocation index";
        let owner: Option<i64> = self.with(|tx| {
            tx.query_opt(
                "SELECT member FROM skylan_ip_index WHERE nwid = $1 AND ip = $2",
                &[&nwid_key(nwid), &ip],
            )
            .and_then(|row| row.map(|r| r.try_get(0)).transpose())
            .ctx(ctx)
        })?;
        owner.map(addr_from_key).transpose()
    }

    fn put_network(&mut self, network: &mut Network) -> Result<(), ControllerError> {
        let old = self.network(network.id)?;
        network.revision = old.map_or(0, |o| o.revision) + 1;
        self.exec(
            "saving a network",
            "INSERT INTO skylan_networks (nwid, body) VALUES ($1, $2) \
             ON CONFLICT (nwid) DO UPDATE SET body = EXCLUDED.body",
            &[&nwid_key(network.id), &Json(&*network)],
        )?;
        Ok(())
    }

    fn delete_network(&mut self, nwid: NetworkId) -> Result<Option<Network>, ControllerError> {
        let ctx = "deleting a network";
        let old = self.network(nwid)?;
        let key = nwid_key(nwid);
        for table in [
            "skylan_members",
            "skylan_ip_index",
            "skylan_bridges",
            "skylan_networks",
        ] {
            self.exec(
                ctx,
                &format!("DELETE FROM {table} WHERE nwid = $1"),
                &[&key],
            )?;
        }
        Ok(old)
    }

    fn put_member(&mut self, member: &mut Member) -> Result<(), ControllerError> {
        let ctx = "saving a member";
        let nwid = member.nwid;
        if self.network(nwid)?.is_none() {
            return Err(ControllerError::NotFound {
                what: format!("network {nwid}"),
            });
        }
        let (n, me) = (nwid_key(nwid), addr_key(member.address));
        let old = self.member(nwid, member.address)?;
        for ip in released_ips(old.as_ref(), member) {
            self.exec(
                ctx,
                "DELETE FROM skylan_ip_index WHERE nwid = $1 AND ip = $2 AND member = $3",
                &[&n, ip, &me],
            )?;
        }
        for ip in &member.ip_assignments {
            match self.ip_owner(nwid, *ip)? {
                Some(owner) if owner != member.address => {
                    return Err(ip_conflict(*ip, owner, nwid));
                }
                Some(_) => {}
                None => {
                    self.exec(
                        ctx,
                        "INSERT INTO skylan_ip_index (nwid, ip, member) VALUES ($1, $2, $3)",
                        &[&n, ip, &me],
                    )?;
                }
            }
        }
        if member.active_bridge && member.authorized {
            self.exec(
                ctx,
                "INSERT INTO skylan_bridges (nwid, address) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&n, &me],
            )?;
        } else {
            self.exec(
                ctx,
                "DELETE FROM skylan_bridges WHERE nwid = $1 AND address = $2",
                &[&n, &me],
            )?;
        }
        member.revision = old.map_or(0, |o| o.revision) + 1;
        self.exec(
            ctx,
            "INSERT INTO skylan_members (nwid, address, body) VALUES ($1, $2, $3) \
             ON CONFLICT (nwid, address) DO UPDATE SET body = EXCLUDED.body",
            &[&n, &me, &Json(&*member)],
        )?;
        Ok(())
    }

    fn delete_member(
        &mut self,
        nwid: NetworkId,
        address: NodeAddress,
    ) -> Result<Option<Member>, ControllerError> {
        let ctx = "deleting a member";
        let Some(old) = self.member(nwid, address)? else {
            return Ok(None);
        };
        let (n, me) = (nwid_key(nwid), addr_key(address));
        for table in ["skylan_ip_index", "skylan_bridges", "skylan_members"] {
            let column = if table == "skylan_ip_index" {
                "member"
            } else {
                "address"
            };
            self.exec(
                ctx,
                &format!("DELETE FROM {table} WHERE nwid = $1 AND {column} = $2"),
                &[&n, &me],
            )?;
        }
        Ok(Some(old))
    }

    fn append_audit(&mut self, entry: &mut AuditEntry) -> Result<(), ControllerError> {
        let ctx = "writing the audit log";
        let seq: i64 = self.with(|tx| {
            tx.query_one(
                "UPDATE skylan_meta SET value = value + 1 WHERE name = 'audit_seq' RETURNING value",
                &[],
            )
            .and_then(|r| r.try_get(0))
            .ctx(ctx)
        })?;
        entry.seq = u64::try_from(seq).unwrap_or(0);
        self.exec(
            ctx,
            "INSERT INTO skylan_audit (seq, body) VALUES ($1, $2)",
            &[&seq, &Json(&*entry)],
        )?;
        let retain = i64::try_from(AUDIT_RETAIN).unwrap_or(i64::MAX);
        self.exec(
            ctx,
            "DELETE FROM skylan_audit WHERE seq <= $1",
            &[&(seq - retain)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_are_taken_out_of_both_forms() {
        let (rest, root, verify) = take_tls_options(
            "postgres://u:p@db.example/skylan?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
        );
        assert_eq!(
            rest,
            "postgres://u:p@db.example/skylan?application_name=x&sslmode=require"
        );
        assert_eq!((root.as_deref(), verify), (Some("/etc/ca.pem"), true));
        let (rest, root, verify) = take_tls_options("postgres://u@db/skylan?sslrootcert=/ca.pem");
        assert_eq!(
            (rest.as_str(), root.as_deref(), verify),
            ("postgres://u@db/skylan", Some("/ca.pem"), false)
        );
        let (rest, root, verify) =
            take_tls_options("host=db user=u sslmode=verify-ca sslrootcert=/ca.pem dbname=s");
        assert_eq!(rest, "host=db user=u dbname=s sslmode=require");
        assert_eq!((root.as_deref(), verify), (Some("/ca.pem"), true));
        let plain = "postgres://u@db/skylan?sslmode=disable";
        assert_eq!(take_tls_options(plain), (plain.to_string(), None, false));
    }

    #[test]
    fn connection_strings_say_what_is_wrong() {
        let no_tls = target("postgres://u@db/skylan?sslrootcert=/ca.pem")
            .err()
            .unwrap();
        assert!(no_tls.contains("sslmode=verify-full"), "{no_tls}");
        let missing =
            target("postgres://u@db/skylan?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
                .err()
                .unwrap();
        assert!(
            missing.contains("sslrootcert=/nonexistent/ca.pem"),
            "{missing}"
        );
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("ca.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let url = format!(
            "postgres://u@db/skylan?sslmode=require&sslrootcert={}",
            junk.display()
        );
        let empty = target(&url).err().unwrap();
        assert!(empty.contains("no usable CA certificate"), "{empty}");
        let plain = target("postgres://u@db/skylan").unwrap();
        assert!(plain.tls.is_none());
        assert!(
            target("postgres://u@/skylan")
                .err()
                .unwrap()
                .contains("names no host")
        );
    }
}
