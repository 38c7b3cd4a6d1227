//! The `skylan` command line: parses arguments and hands over to the library's `io`
//! layer. Exit status: 0 success, 1 the daemon said no or could not be reached (the
//! message says what to check), 2 usage errors.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use skylan::cli::{client, controller as controller_cli, docs, dump, moons, node as cli};
use skylan::io::http::controller::ControllerDb;
use skylan::io::{daemon, home, local};

#[derive(Parser)]
#[command(
    name = "skylan",
    version,
    about = "An end-to-end encrypted virtual Ethernet overlay"
)]
struct Args {
    /// Home directory: identity, API token, planet, cached networks.
    #[arg(long, global = true, env = "SKYLAN_HOME", default_value = home::DEFAULT_HOME)]
    home: PathBuf,
    /// Print the API's JSON instead of text.
    #[arg(short = 'j', long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node daemon.
    Node {
        /// UDP port; the local API listens on the same TCP port on 127.0.0.1 [default:
        /// `primaryPort` in <home>/local.toml, else 9993].
        #[arg(long)]
        port: Option<u16>,
        /// The planet file (default: <home>/planet).
        #[arg(long)]
        planet: Option<PathBuf>,
        /// Local API TCP port, if not the UDP port [default: `apiPort` in
        /// <home>/local.toml].
        #[arg(long)]
        api_port: Option<u16>,
        /// Also run the network controller (network IDs start with this node's address).
        #[arg(long)]
        controller: bool,
        /// Keep the controller's networks and members in PostgreSQL instead of
        /// <home>/controller.d (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE). Several
        /// controllers with the same identity may share one database: one serves, the
        /// others stand by and take over when it stops. TLS, with the server's
        /// certificate checked: add ?sslmode=verify-full[&sslrootcert=CA.pem].
        #[arg(long, env = "SKYLAN_CONTROLLER_DB", value_name = "URL", requires = "controller",
              hide_env_values = true, value_parser = skylan::io::postgres::parse_url)]
        controller_db: Option<String>,
        /// Packet threads: each moves datagrams and frames on a socket and TAP queue of
        /// its own (peers spread over them); one also runs the control work.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        workers: u16,
    },
    /// Run a root server (planet or moon member). It also serves every moon in
    /// <home>/moons.d (`<16-hex-id>.moon`, from `idtool genmoon`).
    Root {
        /// UDP port [default: `primaryPort` in <home>/local.toml, else 9993].
        #[arg(long)]
        port: Option<u16>,
        /// The planet: a planet root answers WHOIS for its fellow roots; a moon root says
        /// hello to the planet's roots, so they can introduce it to nodes.
        #[arg(long)]
        planet: Option<PathBuf>,
        /// Local API TCP port on 127.0.0.1 (`/metrics`, `/health`), if not the UDP port
        /// [default: `apiPort` in <home>/local.toml].
        #[arg(long)]
        api_port: Option<u16>,
        /// TCP port of the fallback relay for nodes whose UDP is blocked (nodes try 443:
        /// change it only behind a port forward; 0 turns the relay off).
        #[arg(long, default_value_t = skylan::io::tcp::ROOT_TCP_PORT)]
        tcp_port: u16,
    },
    /// Show this node's address, version and whether it reaches a root.
    Info,
    /// Print what a bug report needs (versions, home directory listing, status, peers,
    /// networks, metrics, the end of the log), with secrets removed.
    Dump {
        /// Take the log from this file (default: the systemd journal).
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
    },
    /// List peers: role, latency, DIRECT or RELAY, path, MTU.
    #[command(visible_alias = "listpeers")]
    Peers,
    /// Ask the roots how they see this node: its external endpoints, the kind of NAT in
    /// front of it, IPv4/IPv6, which peers it can reach directly, each root's latency.
    Netcheck,
    /// Ping a node through the overlay; one line per reply with path and round trip.
    Ping {
        /// The node's 10-digit address.
        address: String,
        /// How many pings (one a second).
        #[arg(short = 'c', long, default_value_t = 4)]
        count: u32,
    },
    /// Orbit a moon: use its roots too (relay through the nearest live root, keep
    /// working through it when the planet's roots are gone). The moon is fetched from the
    /// seed and kept in <home>/moons.d across restarts.
    Orbit {
        /// The moon's id (16 hex digits, or the 10 of its first root's address).
        #[arg(value_name = "MOON-ID")]
        moon: String,
        /// A node that has the moon, usually one of its roots [default: the moon's first
        /// root, whose address is the moon's id].
        #[arg(value_name = "SEED-ADDRESS")]
        seed: Option<String>,
    },
    /// Stop orbiting a moon (its file in <home>/moons.d is removed).
    Deorbit {
        /// The moon's id.
        #[arg(value_name = "MOON-ID")]
        moon: String,
    },
    /// List the moons orbited: id, revision time (or WAITING for the seed), seed, and
    /// each root with its endpoints.
    #[command(visible_alias = "listmoons")]
    Moons,
    /// Join a network by its 16-digit ID.
    Join {
        /// The network ID.
        network: String,
    },
    /// Leave a network.
    Leave {
        /// The network ID.
        network: String,
    },
    /// List joined networks: status, MAC, device, managed addresses, and what is not
    /// installed and why.
    #[command(visible_alias = "listnetworks")]
    Networks,
    /// Change this member's opt-ins for a joined network: which managed addresses and
    /// routes are installed (e.g. `set NWID allowDefault=true allowGlobal=true`).
    Set {
        /// The network ID.
        network: String,
        /// allowManaged, allowGlobal, allowDefault or allowDNS = true|false (or 1|0).
        #[arg(value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
    },
    /// Administer the network controller of the local node (`skylan node --controller`).
    Controller {
        #[command(subcommand)]
        command: controller_cli::ControllerCommand,
    },
    /// The flow-rules language, offline: check, compile, explain.
    Rules {
        #[command(subcommand)]
        command: skylan::cli::rules::RulesCommand,
    },
    /// Identities and world files, offline.
    Idtool {
        #[command(subcommand)]
        command: skylan::cli::idtool::IdtoolCommand,
    },
    /// Print a shell completion script (e.g. `skylan completions bash >
    /// /etc/bash_completion.d/skylan`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page, or write one page per command into a directory.
    Man {
        /// Write skylan.1, skylan-node.1, ... into this directory (made if missing).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Build a throw-away lab of network namespaces and show skylan at work (needs root).
    Demo {
        /// Keep the lab running after the script until Ctrl-C.
        #[arg(long)]
        keep: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKYLAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(args) {
        Ok(out) => {
            if out.is_empty() {
                return ExitCode::SUCCESS;
            }
            match skylan::cli::print_line(out.trim_end()) {
                // A reader that went away early (`| head`) is not a failure.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("skylan: cannot write the output: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            if let Some(Exit(status)) = e.downcast_ref::<Exit>() {
                return ExitCode::from(*status);
            }
            eprintln!("skylan: {e}");
            let code = e
                .downcast_ref::<client::CliError>()
                .map_or(1, |c| c.exit_code());
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

/// A command's exit status after it printed its output: a result, not a failure.
#[derive(Debug)]
struct Exit(u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

fn run(args: Args) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.command {
        Command::Node {
            port,
            planet,
            api_port,
            controller,
            controller_db,
            workers,
        } => {
            // Flags win over <home>/local.toml, which wins over the built-in defaults.
            let local = local::LocalConfig::load(&args.home)?;
            let options = daemon::NodeOptions {
                home: args.home,
                port: port.or(local.port).unwrap_or(local::DEFAULT_PORT),
                planet,
                api_port: api_port.or(local.api_port),
                controller,
                controller_db: controller_db.map_or(ControllerDb::Embedded, ControllerDb::Postgres),
                workers: usize::from(workers),
                network_defaults: local.networks,
            };
            runtime.block_on(daemon::run_node(options, shutdown_signal()))?;
            Ok(String::new())
        }
        Command::Root {
            port,
            planet,
            api_port,
            tcp_port,
        } => {
            // As for the node; a root has no networks, so only [settings] matters.
            let local = local::LocalConfig::load(&args.home)?;
            let options = daemon::RootOptions {
                home: args.home,
                port: port.or(local.port).unwrap_or(local::DEFAULT_PORT),
                world: planet,
                api_port: api_port.or(local.api_port),
                tcp_port,
            };
            runtime.block_on(daemon::run_root(options, shutdown_signal()))?;
            Ok(String::new())
        }
        Command::Info => Ok(cli::info(&args.home, args.json)?),
        Command::Dump { log } => Ok(dump::dump(&args.home, log.as_deref())?),
        Command::Peers => Ok(cli::peers(&args.home, args.json)?),
        Command::Netcheck => Ok(skylan::cli::netcheck::netcheck(&args.home, args.json)?),
        Command::Ping { address, count } => Ok(cli::ping(&args.home, &address, count, args.json)?),
        Command::Join { network } => Ok(cli::join(&args.home, &network, args.json)?),
        Command::Leave { network } => Ok(cli::leave(&args.home, &network, args.json)?),
        Command::Networks => Ok(cli::networks(&args.home, args.json)?),
        Command::Orbit { moon, seed } => {
            Ok(moons::orbit(&args.home, &moon, seed.as_deref(), args.json)?)
        }
        Command::Deorbit { moon } => Ok(moons::deorbit(&args.home, &moon, args.json)?),
        Command::Moons => Ok(moons::moons(&args.home, args.json)?),
        Command::Set { network, settings } => {
            Ok(cli::set(&args.home, &network, &settings, args.json)?)
        }
        Command::Controller { command } => {
            let port = home::Home::existing(&args.home)
                .read_port()
                .unwrap_or(client::DEFAULT_API_PORT);
            let (out, status) =
                controller_cli::run_with_status(&args.home, port, args.json, command)?;
            if status != 0 {
                // `controller plan --detailed-exitcode` with changes: the plan, status 2.
                let _ = skylan::cli::print_line(out.trim_end());
                return Err(Exit(status).into());
            }
            Ok(out)
        }
        Command::Idtool { command } => Ok(skylan::cli::idtool::run(command)?),
        Command::Rules { command } => Ok(skylan::cli::rules::run(command)?),
        Command::Completions { shell } => Ok(docs::completions(Args::command(), shell)),
        Command::Man { out } => Ok(docs::man(Args::command(), out.as_deref())?),
        Command::Demo { keep } => Ok(skylan::lab::demo::run(&skylan::lab::demo::DemoOptions {
            skylan: None,
            keep,
        })?),
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
