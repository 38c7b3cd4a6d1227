//! Two controller processes with the same identity on one PostgreSQL server, each on a
//! host of its own: the first serves, the second stands by. Under a stream of member
//! writes through the API the serving one is killed with SIGKILL; the standby takes
//! over, every write the first one acknowledged is there, a member that joined before
//! stays OK, and a node that joins afterwards is admitted by the new process and pings
//! the first member. The time from the kill to the first acknowledged write on the
//! standby is printed (and must stay under the 10 s the product promises). The
//! controllers reach the database over TLS only, checking its certificate; one from
//! another CA is refused.
//!
//! Needs root (namespaces; the database runs as the `postgres` user); skips loudly
//! otherwise.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use skylan::cli::client::raw_request;
use support::networks::{STEP, controller, create_network, managed_ip, ping_ip, wait_status};
use support::postgres::PgServer;
use support::{Daemon, Testbed, wait_until};

const ROOT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 111);
const DB_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 112);
const C1_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 113);
const C2_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 114);
const A_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 115);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 116);

/// The promise: the standby serves within this long after the serving process dies.
const TAKEOVER: Duration = Duration::from_secs(10);

/// The `i`th made-up member address (valid, distinct, never a real node's).
fn member_address(i: usize) -> String {
    format!("{:010x}", 0x3b_0000_0000u64 + (i as u64) * 0x1_0003)
}

/// One authorization through `ctrl`'s API from inside its namespace: `Ok(true)` when
/// acknowledged (200), `Ok(false)` when the API is not there or refused.
fn authorize(ctrl: &Daemon, nwid: &str, member: &str) -> Result<bool> {
    let (Ok(token), Ok(port)) = (
        std::fs::read_to_string(ctrl.home.join("authtoken.secret")),
        std::fs::read_to_string(ctrl.home.join("skylan.port")),
    ) else {
        return Ok(false);
    };
    let port: u16 = port.trim().parse()?;
    let path = format!("/controller/network/{nwid}/member/{member}");
    ctrl.host.run(move || {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let headers = [("X-ZT1-Auth", token.trim())];
        Ok(
            raw_request(addr, "POST", &path, &headers, br#"{"authorized": true}"#)
                .is_ok_and(|r| r.status == 200),
        )
    })?
}

/// What the writer saw.
#[derive(Default)]
struct Writes {
    /// Acknowledged by the first controller.
    acked_first: Vec<String>,
    /// Acknowledged by the standby.
    acked_second: Vec<String>,
    /// When the standby acknowledged its first write.
    first_on_second: Option<Instant>,
}

#[test]
fn the_standby_controller_takes_over_and_no_acknowledged_write_is_lost() -> Result<()> {
    let Some(tb) = Testbed::new(
        "the_standby_controller_takes_over_and_no_acknowledged_write_is_lost",
        "pgfailover",
    )?
    else {
        return Ok(());
    };
    let db_host = tb.public_host("db", DB_IP)?;
    let pg = PgServer::start(Some(&db_host))?;
    // Over TLS, the server checked against the run's CA (the server takes nothing else).
    let url = pg.tls_url()?;
    let root_host = tb.public_host("root", ROOT_IP)?;
    let (_roots, planet) = tb.start_planet(&[("root", &root_host)])?;
    let flags = ["--controller", "--controller-db", url.as_str()];

    let ctrl1 = tb.start_node("ctrl1", &tb.public_host("c1", C1_IP)?, &planet, &flags)?;
    tb.wait_online(&ctrl1, STEP)?;
    // The standby is the same controller: the same identity, on another machine.
    let home2 = tb.dir().join("ctrl2");
    std::fs::create_dir_all(&home2)?;
    for file in ["identity.secret", "identity.public"] {
        std::fs::copy(ctrl1.home.join(file), home2.join(file))?;
    }
    let ctrl2 = tb.start_node("ctrl2", &tb.public_host("c2", C2_IP)?, &planet, &flags)?;
    ensure!(
        ctrl2.address == ctrl1.address,
        "the standby has another identity"
    );
    wait_until("ctrl2 to stand by", STEP, || {
        let log = std::fs::read_to_string(&ctrl2.log)?;
        ensure!(log.contains("standing by"), "not standing by yet");
        Ok(())
    })?;
    ensure!(
        !ctrl2.home.join("skylan.port").exists(),
        "the standby serves an API while the other process holds the lock"
    );
    // Both processes' connections are encrypted (the serving one has two).
    let encrypted = pg.sql(
        "skylan",
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE s.ssl AND a.client_addr IS NOT NULL",
    )?;
    ensure!(
        encrypted.parse::<u32>()? >= 3,
        "{encrypted} TLS connections from the controllers, expected 3"
    );
    // A server whose certificate the given CA did not sign is refused, and said so.
    let wrong = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.tcp_url()?,
        pg.other_ca_file().display()
    );
    let address = ctrl1.address;
    let refused = ctrl2
        .host
        .run(move || skylan::io::postgres::PgStore::open(&wrong, address).err())?
        .context("a server certificate from another CA was accepted")?
        .to_string();
    ensure!(refused.contains("certificate"), "refused, but: {refused}");
    tb.report(format!("a database certificate from another CA: {refused}"));

    let nwid = create_network(&tb, &ctrl1, "198.18.7.1-198.18.7.254", "198.18.7.0/24")?;
    let a = tb.start_node("a", &tb.public_host("a", A_IP)?, &planet, &[])?;
    tb.wait_online(&a, STEP)?;
    tb.cli(&a, &["join", &nwid])?;
    controller(
        &tb,
        &ctrl1,
        &["member", "authorize", &nwid, &a.address.to_string()],
    )?;
    let ip_a = managed_ip(&wait_status(&tb, &a, &nwid, "OK")?)?;

    // Writes go to whichever controller answers, one at a time, until the standby has
    // acknowledged 50.
    let writes = Arc::new(Mutex::new(Writes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (writes, stop) = (writes.clone(), stop.clone());
        let (c1, c2, nwid) = (ctrl1.clone(), ctrl2.clone(), nwid.clone());
        std::thread::spawn(move || -> Result<()> {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let member = member_address(i);
                if authorize(&c1, &nwid, &member)? {
                    writes.lock().unwrap().acked_first.push(member);
                    i += 1;
                } else if authorize(&c2, &nwid, &member)? {
                    let mut w = writes.lock().unwrap();
                    w.first_on_second.get_or_insert_with(Instant::now);
                    w.acked_second.push(member);
                    if w.acked_second.len() >= 50 {
                        return Ok(());
                    }
                    i += 1;
                } else {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Ok(())
        })
    };
    wait_until("100 writes on the first controller", STEP, || {
        let n = writes.lock().unwrap().acked_first.len();
        ensure!(n >= 100, "{n} so far");
        Ok(())
    })?;
    let killed = Instant::now();
    tb.lab().crash(ctrl1.pid).context("killing ctrl1")?;
    tb.note("killed ctrl1 with SIGKILL under writes");
    let done = wait_until("the standby to acknowledge 50 writes", STEP, || {
        ensure!(writer.is_finished(), "still writing");
        Ok(())
    });
    stop.store(true, Ordering::SeqCst);
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the writer panicked"))??;
    done?;

    let w = writes.lock().unwrap();
    let takeover = w
        .first_on_second
        .context("the standby never acknowledged a write")?
        .duration_since(killed);
    tb.report(format!(
        "controller failover: the standby acknowledged its first write {:.2} s after SIGKILL of the serving process ({} writes acknowledged before, {} after)",
        takeover.as_secs_f64(),
        w.acked_first.len(),
        w.acked_second.len()
    ));
    ensure!(
        takeover < TAKEOVER,
        "the standby took {takeover:?} to serve (promised: under {TAKEOVER:?})"
    );

    // Every acknowledged write is in the database the standby serves.
    let listed = controller(&tb, &ctrl2, &["members", &nwid])?;
    let listed: BTreeSet<String> = listed
        .as_object()
        .with_context(|| format!("members -j gave {listed}"))?
        .keys()
        .cloned()
        .collect();
    let lost: Vec<&String> = w
        .acked_first
        .iter()
        .chain(&w.acked_second)
        .filter(|m| !listed.contains(*m))
        .collect();
    ensure!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    tb.report(format!(
        "controller failover: all {} acknowledged writes found on the standby",
        w.acked_first.len() + w.acked_second.len()
    ));
    drop(w);

    // The member that joined before keeps its network; a new one is admitted by the
    // process that took over and reaches the first.
    wait_status(&tb, &a, &nwid, "OK")?;
    let b = tb.start_node("b", &tb.public_host("b", B_IP)?, &planet, &[])?;
    tb.wait_online(&b, STEP)?;
    tb.cli(&b, &["join", &nwid])?;
    controller(
        &tb,
        &ctrl2,
        &["member", "authorize", &nwid, &b.address.to_string()],
    )?;
    wait_status(&tb, &b, &nwid, "OK")?;
    wait_until("b pings a over the network", STEP, || {
        ensure!(ping_ip(&tb, &b, &ip_a)?, "no reply");
        Ok(())
    })?;
    drop(pg);
    tb.finish();
    Ok(())
}
