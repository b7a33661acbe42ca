//! The `sockway` binary: command line, configuration loading, logging and signals.
//!
//! Everything that serves traffic is the `sockway_gateway` library; this file turns arguments
//! into a validated configuration before anything binds ([`Source::load`], the one function
//! that loads it, at start and at every reload), prints one line per listener, turns
//! SIGTERM/SIGINT into the gateway's graceful shutdown and SIGHUP into a configuration reload
//! (which also reads the TLS certificate again), and tells systemd about each (`systemd`). The
//! admin commands that call a running gateway's management API (`connections`, `groups`,
//! `broadcast`, `api-keys`, `reload`) are `admin`'s;
//! `import` and `serve --template`, which read a CloudFormation, SAM or Serverless definition
//! instead of a config file, are `template`'s; the probe `sockway health` is `health`'s;
//! `presign` (a URL for an `AWS_IAM` `$connect`) is `presign`'s.

mod admin;
mod health;
mod presign;
mod systemd;
mod template;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sockway_gateway::Gateway;
use sockway_gateway::config::{
    Config, ConfigSource, Environment, Loaded, LogConfig, LogFormat, LogLevel,
};

/// A self-hosted WebSocket API gateway that speaks the AWS API Gateway WebSocket API model.
#[derive(Debug, Parser)]
#[command(name = "sockway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The configuration file.
        #[arg(long, default_value = "sockway.toml")]
        config: PathBuf,
        /// Run the WebSocket API of this CloudFormation/SAM template or serverless.yml
        /// instead of a configuration file (see `sockway import`).
        #[arg(long, value_name = "FILE", conflicts_with = "config")]
        template: Option<PathBuf>,
        /// With --template: TOML merged over the imported configuration (tables merge key
        /// by key, other values replace), for what a template does not say.
        #[arg(long, value_name = "FILE", requires = "template")]
        overrides: Option<PathBuf>,
        #[command(flatten)]
        template_args: template::TemplateArgs,
        /// Overrides `gateway.listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Overrides `management.listen`.
        #[arg(long)]
        management_listen: Option<SocketAddr>,
        /// Log level filter, over `RUST_LOG` and `log.level`: `info`, or per module such as
        /// `warn,sockway_gateway::cluster=debug`.
        #[arg(long)]
        log_level: Option<String>,
    },
    /// Print the sockway configuration of a CloudFormation/SAM template (YAML, or JSON as
    /// `cdk synth` writes it) or a serverless.yml; notes on what was not carried over go to
    /// standard error. Exit 2 on errors.
    Import {
        /// The template or serverless.yml.
        file: PathBuf,
        #[command(flatten)]
        template_args: template::TemplateArgs,
    },
    /// Check a configuration file and exit: 0 when valid (risky settings are printed as
    /// warnings), 2 otherwise. `SOCKWAY_…__…` environment variables and `*_file` keys apply,
    /// as they do for `serve`.
    Validate {
        /// The configuration file.
        #[arg(long, default_value = "sockway.toml")]
        config: PathBuf,
        /// Also print every effective key, its value (secrets as "****") and where the value
        /// came from: a line of the file, an environment variable, a file, or the default.
        #[arg(long)]
        explain: bool,
        /// Check the configuration `serve --template FILE` would run instead.
        #[arg(long, value_name = "FILE", conflicts_with = "config")]
        template: Option<PathBuf>,
        /// With --template: TOML merged over the imported configuration.
        #[arg(long, value_name = "FILE", requires = "template")]
        overrides: Option<PathBuf>,
        #[command(flatten)]
        template_args: template::TemplateArgs,
    },
    /// Check that a running gateway is alive (`GET /health`): exit 0 when it answers 200,
    /// 1 otherwise; for container health checks.
    Health(health::HealthArgs),
    /// Print a wss:// URL presigned with one of the config's [[iam.credentials]], for a
    /// client (a browser) to connect to an AWS_IAM $connect.
    Presign(presign::PresignArgs),
    #[command(flatten)]
    Admin(admin::AdminCommand),
}

/// Exit status for a configuration that does not load.
const EXIT_CONFIG: u8 = 2;

/// mimalloc instead of the system allocator: per-thread heaps without glibc's arena locks on
/// the message path (see BENCHMARKS.md for what it changed).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The environment is read here, once: config variables, `*_env` keys and a
    // serverless.yml's `${env:...}` all see this copy.
    let env = Environment::new(std::env::vars_os());
    match cli.command {
        Command::Admin(command) => admin::run(command),
        Command::Presign(args) => presign::run(args),
        Command::Health(args) => health::run(args),
        Command::Import {
            file,
            template_args,
        } => template::import(&file, &template_args, &env),
        Command::Validate {
            config,
            explain,
            template,
            overrides,
            template_args,
        } => {
            let source = Source {
                config,
                template,
                overrides,
                template_args,
                env,
                listen: None,
                management_listen: None,
            };
            match source.load_explained() {
                Ok(loaded) => {
                    let file = source.file();
                    if explain {
                        let mut stdout = std::io::stdout().lock();
                        for key in loaded.explain() {
                            let _ = writeln!(stdout, "{key}");
                        }
                    }
                    for warning in loaded.config.warnings() {
                        eprintln!("{}: warning: {warning}", file.display());
                    }
                    println!("{}: configuration is valid", file.display());
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("{error}");
                    ExitCode::from(EXIT_CONFIG)
                }
            }
        }
        Command::Serve {
            config,
            template,
            overrides,
            template_args,
            listen,
            management_listen,
            log_level,
        } => {
            let source = Source {
                config,
                template,
                overrides,
                template_args,
                env,
                listen,
                management_listen,
            };
            let loaded = match source.load() {
                Ok(loaded) => loaded,
                Err(error) => {
                    eprintln!("{error}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let levels = match init_logging(&loaded.log, log_level.as_deref()) {
                Ok(levels) => levels,
                Err(message) => {
                    eprintln!("sockway: {message}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            match serve(loaded, source, levels) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("sockway: {error:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The configuration file alone, as the admin commands, `presign` and `health` read it: with
/// the environment's `SOCKWAY_…__…` variables and `*_file` keys, as `serve` reads it.
pub(crate) fn load_config_file(path: &Path) -> Result<Config, String> {
    let env = Environment::new(std::env::vars_os());
    Config::load_file(path, &env)
        .map(|loaded| loaded.config)
        .map_err(|error| error.to_string())
}

/// Where the configuration comes from: a file, or a template with its options, the
/// environment read once at start, and the flags that override what they say. `serve` loads
/// it at start and again at every reload, `validate` once, all through [`Source::load`], so a
/// reload sees exactly what a restart would.
#[derive(Debug, Clone)]
struct Source {
    config: PathBuf,
    template: Option<PathBuf>,
    overrides: Option<PathBuf>,
    template_args: template::TemplateArgs,
    /// The `SOCKWAY_…__…` variables, `*_env` keys and a serverless.yml's `${env:...}` see
    /// this copy, taken once in `main`.
    env: Environment,
    /// `--listen`, over `gateway.listen`.
    listen: Option<SocketAddr>,
    /// `--management-listen`, over `management.listen`.
    management_listen: Option<SocketAddr>,
}

impl Source {
    /// The configuration file, or the configuration imported from a template with its
    /// overrides, with the environment's variables over it and its `*_file` keys read, and
    /// where each value came from; the error is what `validate` prints.
    fn load_explained(&self) -> Result<Loaded, String> {
        match &self.template {
            Some(file) => template::load(
                file,
                &self.template_args,
                self.overrides.as_deref(),
                &self.env,
            ),
            None => Config::load_file(&self.config, &self.env).map_err(|error| error.to_string()),
        }
    }

    /// The validated configuration with the flags applied.
    fn load(&self) -> Result<Config, String> {
        let mut loaded = self.load_explained()?.config;
        if let Some(listen) = self.listen {
            loaded.gateway.listen = listen;
        }
        if let Some(management_listen) = self.management_listen {
            loaded.management.listen = Some(management_listen);
        }
        Ok(loaded)
    }

    /// The file read: the template, or the configuration file.
    fn file(&self) -> &Path {
        self.template.as_deref().unwrap_or(&self.config)
    }
}

fn serve(config: Config, source: Source, levels: Option<LogLevels>) -> anyhow::Result<()> {
    // No transparent huge pages, even where the kernel's mode is `always`: the heap is many
    // small per-connection objects spread thinly over its pages, and a huge page makes all
    // 2 MiB around one of them resident (khugepaged also collapses sparse ranges into huge
    // pages while the gateway is idle). Measured in BENCHMARKS.md, section 1. A kernel
    // without the call leaves its own setting, which only costs memory.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // SIGHUP, `sockway reload` and `POST /@reload` all read the configuration through the
        // same `Source::load` that produced `config`; a reload that changes `log.level` sets it
        // here, whichever of them triggered it.
        let source = ConfigSource::new(move || source.load()).on_applied(move |config| {
            if let Some(levels) = &levels {
                levels.set(&config.log.level);
            }
        });
        let gateway = Gateway::bind_with_source(config, source).await?;
        // Signal handlers go in before the startup line, so a supervisor that reacts to the
        // line with SIGTERM gets a graceful shutdown, not the default action.
        let shutdown = gateway.shutdown_token();
        let notifier = systemd::Notifier::from_environment().map(std::sync::Arc::new);
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let mut hangup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        let stopping = notifier.clone();
        tokio::spawn(async move {
            wait_for_signal(terminate, interrupt).await;
            if let Some(notifier) = &stopping {
                notifier.notify("STOPPING=1");
            }
            shutdown.cancel();
            tracing::info!("shutting down: closing connections and delivering $disconnect");
        });
        // Tests and supervisors read these lines; a closed stdout must not stop the gateway,
        // so write errors are ignored rather than panicking as `println!` would.
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "sockway listening on {}", gateway.ws_url());
        if gateway.management_addr().is_some() {
            let _ = writeln!(
                stdout,
                "sockway management listening on {}",
                gateway.management_url()
            );
        }
        if let Some(addr) = gateway.operations_addr() {
            let _ = writeln!(stdout, "sockway operations listening on http://{addr}");
        }
        let _ = stdout.flush();
        drop(stdout);
        if let Some(notifier) = &notifier {
            notifier.notify(&format!(
                "READY=1\nSTATUS=serving on {}\nMAINPID={}",
                gateway.ws_url(),
                std::process::id()
            ));
            if let Some(interval) = systemd::watchdog_interval() {
                let notifier = notifier.clone();
                tokio::spawn(async move {
                    let mut ticks = tokio::time::interval(interval);
                    loop {
                        ticks.tick().await;
                        notifier.notify("WATCHDOG=1");
                    }
                });
            }
        }
        let shutdown = gateway.shutdown_token();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = hangup.recv() => {
                    if let Some(notifier) = &notifier {
                        notifier.notify(&systemd::reloading());
                    }
                    // The gateway logs the outcome (the problems, or the keys that need a
                    // restart) and keeps the running configuration when it is refused.
                    let reloaded = gateway.reload_from_source().await;
                    if let Some(notifier) = &notifier {
                        let status = match reloaded {
                            Ok(_) => "configuration reloaded",
                            Err(_) => "the last reload was refused (see the log)",
                        };
                        notifier.notify(&format!(
                            "READY=1\nSTATUS=serving on {}; {status}",
                            gateway.ws_url()
                        ));
                    }
                }
            }
        }
        gateway.wait().await;
        tracing::info!("shutdown complete");
        Ok(())
    })
}

/// Sets the application log's level filter after startup, when `log.level` chose it.
struct LogLevels(Box<dyn Fn(&LogLevel) + Send + Sync>);

impl LogLevels {
    /// Filters by `level` from now on.
    fn set(&self, level: &LogLevel) {
        (self.0)(level);
    }
}

/// Sets up the application log on standard error: `log.format`, and the level filter from
/// `--log-level`, else `RUST_LOG`, else `log.level`. In the last case the filter can be
/// changed by a reload, through the [`LogLevels`] returned.
fn init_logging(config: &LogConfig, flag: Option<&str>) -> Result<Option<LogLevels>, String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::reload;
    use tracing_subscriber::util::SubscriberInitExt;
    let chosen = match flag {
        Some(text) => Some(LogLevel::parse(text).map_err(|error| format!("--log-level {error}"))?),
        None => match std::env::var("RUST_LOG") {
            Ok(text) if !text.trim().is_empty() => {
                Some(LogLevel::parse(&text).map_err(|error| format!("RUST_LOG {error}"))?)
            }
            _ => None,
        },
    };
    let level = chosen.as_ref().unwrap_or(&config.level);
    let builder = tracing_subscriber::fmt()
        .with_writer(|| LogWriter(std::io::stderr()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A reloadable filter only when the file chose the level: a flag or RUST_LOG wins over it
    // for the life of the process.
    let reloadable = chosen.is_none();
    let levels = match config.format {
        LogFormat::Text => {
            let (filter, handle) = reload::Layer::new(level.targets());
            builder.finish().with(filter).init();
            LogLevels(Box::new(move |level: &LogLevel| {
                let _ = handle.reload(level.targets());
            }))
        }
        LogFormat::Json => {
            let (filter, handle) = reload::Layer::new(level.targets());
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish()
                .with(filter)
                .init();
            LogLevels(Box::new(move |level: &LogLevel| {
                let _ = handle.reload(level.targets());
            }))
        }
    };
    Ok(reloadable.then_some(levels))
}

/// Standard error for logs, ignoring write failures: a closed log pipe must not take the
/// gateway down or stop its shutdown.
struct LogWriter(std::io::Stderr);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// Waits for SIGTERM or SIGINT on streams registered before the startup line was printed.
async fn wait_for_signal(
    mut terminate: tokio::signal::unix::Signal,
    mut interrupt: tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}
