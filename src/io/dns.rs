//! A network's DNS settings on the host, per link, through systemd-resolved.
//!
//! # Contract
//! - When a member allows DNS (`allowDNS=true`) and the network's config has DNS
//!   servers or a search domain, [`HostDns::apply`] sets them on the network's device
//!   with `resolvectl dns DEV SERVER...` and `resolvectl domain DEV DOMAIN`, after a
//!   `resolvectl revert DEV` so nothing from an earlier config stays. The domain is a
//!   search domain, and so also routes names under it to these servers; other names
//!   keep going to the host's resolvers.
//! - It runs `resolvectl` only when what it would set differs from what it set last.
//!   [`HostDns::revert`] (`resolvectl revert DEV`) undoes it when DNS is no longer
//!   allowed or wanted, and when the network is left; a device that goes away takes
//!   its per-link settings with it in systemd-resolved anyway.
//! - Where there is no `resolvectl` on `PATH` (no systemd-resolved), or it fails (the
//!   service is not running), nothing is changed; the error says so and what to do, and
//!   the caller lists it with the network's skipped items. skylan never edits
//!   `/etc/resolv.conf`: that file belongs to whatever manages the host's resolvers.
//!
//! This is I/O code: it starts processes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::controller::model::Dns;
use crate::service::optin::SkipReason;

/// The tool that changes systemd-resolved's per-link settings.
pub const RESOLVECTL: &str = "resolvectl";

/// What this host's resolver was told, per device. See the module documentation.
pub struct HostDns {
    tool: Option<PathBuf>,
    applied: HashMap<String, Dns>,
}

impl HostDns {
    /// Finds `resolvectl` on `PATH` (once, at start).
    pub fn detect() -> Self {
        let tool = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(RESOLVECTL))
                .find(|p| is_executable(p))
        });
        HostDns {
            tool,
            applied: HashMap::new(),
        }
    }

    /// Sets `dns` on `device` unless it is set already; the reason when it cannot be
    /// (a failure is logged with `resolvectl`'s own words).
    pub async fn apply(&mut self, device: &str, dns: &Dns) -> Result<(), SkipReason> {
        if self.applied.get(device) == Some(dns) {
            return Ok(());
        }
        let Some(tool) = self.tool.clone() else {
            return Err(SkipReason::NoResolver);
        };
        self.applied.remove(device);
        let mut steps = vec![vec!["revert".to_string(), device.to_string()]];
        if !dns.servers.is_empty() {
            let mut args = vec!["dns".to_string(), device.to_string()];
            args.extend(dns.servers.iter().map(|s| s.to_string()));
            steps.push(args);
        }
        if !dns.domain.is_empty() {
            steps.push(vec!["domain".into(), device.into(), dns.domain.clone()]);
        }
        for args in steps {
            if let Err(e) = run(&tool, &args).await {
                tracing::warn!(device, "DNS settings not applied: {e}");
                return Err(SkipReason::ResolverFailed);
            }
        }
        self.applied.insert(device.to_string(), dns.clone());
        tracing::info!(device, servers = ?dns.servers, domain = %dns.domain, "DNS applied");
        Ok(())
    }

    /// Undoes [`apply`](Self::apply) on `device`, if it applied anything.
    pub async fn revert(&mut self, device: &str) {
        if self.applied.remove(device).is_none() {
            return;
        }
        if let Some(tool) = &self.tool {
            match run(tool, &["revert", device]).await {
                Ok(()) => tracing::info!(device, "DNS settings removed"),
                Err(e) => tracing::warn!(device, "removing DNS settings: {e}"),
            }
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `tool args...`; its complaint when it fails.
async fn run(tool: &Path, args: &[impl AsRef<str>]) -> Result<(), String> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let out = tokio::process::Command::new(tool)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    Err(format!(
        "`{RESOLVECTL} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        said.trim()
    ))
}
