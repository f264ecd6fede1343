//! `sse-gateway --config gateway.yaml [--check] [--upgrade] [--log-format human|json]`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use sse_gateway::config::{self, Config};
use sse_gateway::server::{self, Launch};

/// jemalloc rather than glibc's malloc: pingora's proxy allocates and frees per request on
/// both worker threads, and glibc's arena locks made the gateway pass 0.84x the requests per
/// second (1.23x the CPU per request) of the same build on jemalloc, with idle streams no
/// larger (3.51 KiB each at 10,000; see the performance chapter of the book).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(version, about = "A Server-Sent Events gateway and reverse proxy")]
struct Cli {
    /// The configuration file. When the default is absent, the embedded default config runs.
    #[arg(long, env = "SSE_GATEWAY_CONFIG", default_value = "gateway.yaml")]
    config: PathBuf,
    /// Validate the configuration, print `ok` or every error, and exit (0 ok, 2 invalid).
    #[arg(long)]
    check: bool,
    /// Take the listening socket over from the gateway running on the same `listen` address
    /// (which is told with SIGQUIT, hands the socket over and drains its streams): a restart
    /// without a refused connection, for a new binary or a changed `listen`.
    #[arg(long)]
    upgrade: bool,
    /// Where the running gateway and its replacement meet to hand the socket over. Default: a
    /// file per listening port in $XDG_RUNTIME_DIR (or the temp directory).
    #[arg(long, value_name = "PATH")]
    upgrade_sock: Option<PathBuf>,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // Read before the config is loaded from the file, so that an edit made before the reloader
    // watches is caught (one made between the two reads is reloaded once more, at worst).
    let read_from = std::fs::read(&cli.config).ok();
    let config = match load(&cli) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        println!("ok");
        return ExitCode::SUCCESS;
    }
    let launch = Launch {
        upgrade: cli.upgrade,
        upgrade_sock: cli.upgrade_sock.clone(),
    };
    let built = match server::build(config, read_from, &launch) {
        Ok(built) => built,
        Err(message) => {
            eprintln!("sse-gateway: {message}");
            return ExitCode::from(2);
        }
    };
    // One line on stdout that people and test harnesses can rely on.
    println!("sse-gateway listening on http://{}", built.listen);
    if let Some(https) = built.https {
        println!("sse-gateway listening on https://{https}");
    }
    built.run()
}

/// The given file; or the embedded default when the default path does not exist.
fn load(cli: &Cli) -> Result<Config, config::ConfigErrors> {
    let is_default_path = cli.config == std::path::Path::new("gateway.yaml");
    if is_default_path && !cli.config.exists() {
        tracing::info!("no gateway.yaml here; running the embedded default configuration");
        return Config::embedded_default();
    }
    config::load(&cli.config)
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // pingora's proxy quotes whole request heads at debug and trace level, credentials in
        // `Authorization`, cookies and URLs included: it never logs below info.
        .add_directive(
            "pingora_proxy=info"
                .parse()
                .expect("a constant, valid directive"),
        );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
