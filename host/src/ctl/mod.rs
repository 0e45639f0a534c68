//! `pilot-host ctl`: the control plane's command-line client. Exit 0 done, 1 refused (the reason
//! printed), 2 cannot connect or bad usage.
//!
//! A socket it finds by itself (from `--manifest`, or the only live one) must be in a folder that
//! `run` would use too: this user's, closed to others. Whatever a server sends is printed with its
//! control characters escaped, so a server cannot act on the terminal.

mod client;
mod table;
mod target;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use hyper::{Method, StatusCode};

pub use self::client::{read_events, Client, ClientError, Target};
use crate::control::model::{ActionReply, ErrorBody, LogsReply, ProcessView};

/// Where to find the control server, and what to ask it.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The control socket (default: the socket of `--manifest`, else the only live one of yours).
    #[arg(long, value_name = "PATH", conflicts_with_all = ["manifest", "url"])]
    pub socket: Option<PathBuf>,
    /// The manifest pilot-host runs; its socket is derived from its path.
    #[arg(long, value_name = "FILE", conflicts_with = "url")]
    pub manifest: Option<PathBuf>,
    /// HTTP address of the control server, e.g. `http://127.0.0.1:7070` or `https://host:7070`.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// File holding the bearer token for `--url` (default: PILOT_HOST_TOKEN).
    #[arg(long, value_name = "FILE", requires = "url")]
    pub token_file: Option<PathBuf>,
    /// PEM file of the certificate authorities (or the certificate itself) to verify an `https://`
    /// server with, instead of the system's.
    #[arg(long, value_name = "FILE", requires = "url")]
    pub ca_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// The `ctl` commands.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Show every process: name, state, pid, uptime, restarts, CPU, memory.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Start processes (each once its dependencies are up).
    Start {
        /// The processes.
        #[arg(required = true)]
        names: Vec<String>,
        /// Answer once they are ready, not just spawned.
        #[arg(long)]
        wait_ready: bool,
    },
    /// Stop processes; answers once each process group is gone.
    Stop {
        /// The processes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Restart processes (all or none: an unknown name restarts nothing).
    Restart {
        /// The processes.
        #[arg(required = true)]
        names: Vec<String>,
        /// Answer once they are ready, not just spawned.
        #[arg(long)]
        wait_ready: bool,
    },
    /// Print a process's last output lines.
    Logs {
        /// The process.
        name: String,
        /// How many lines.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        /// Keep printing new lines.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Print the event stream, one JSON object per line, until interrupted.
    Events,
    /// Reload the manifest file.
    Reload,
    /// Stop every process in order and end pilot-host.
    Shutdown,
    /// Send a request to a control plugin (`/plugins/NAME/PATH`) and print its answer's body.
    Plugin {
        /// The control plugin.
        name: String,
        /// The path under the plugin's mount point, e.g. `/health` (a query may follow).
        #[arg(default_value = "/")]
        path: String,
        /// The HTTP method.
        #[arg(short = 'X', long, default_value = "GET")]
        method: String,
        /// The request body (`@FILE` reads it from a file, `-` from standard input).
        #[arg(short = 'd', long)]
        data: Option<String>,
        /// The body's content type.
        #[arg(long, default_value = "application/json")]
        content_type: String,
        /// Print the status line and headers before the body.
        #[arg(short = 'i', long)]
        include: bool,
    },
}

/// Why `ctl` stopped.
enum Stop {
    /// Refused by the server (exit 1).
    Refused(String),
    /// Cannot connect, or bad usage (exit 2).
    Usage(String),
}

impl From<ClientError> for Stop {
    fn from(e: ClientError) -> Stop {
        Stop::Usage(e.to_string())
    }
}

/// Runs `pilot-host ctl`.
pub fn run(args: CtlArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let client = Client::new(target::target(&args)?);
        command(&client, &args.command).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Stop::Refused(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
        Err(Stop::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// Reads a JSON answer, or the error the server gave.
async fn json<T: serde::de::DeserializeOwned>(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<T, Stop> {
    let (status, bytes) = client.call(method, path, body).await?;
    if !status.is_success() {
        return Err(refusal(status, &bytes));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Stop::Refused(format!("the answer is not the JSON expected: {e}")))
}

/// Returns `text` from a server with its control characters (but tabs) escaped, so printing it cannot
/// act on the terminal.
fn clean(text: &str) -> String {
    text.split('\t')
        .map(crate::manifest::escape_controls)
        .collect::<Vec<_>>()
        .join("\t")
}

fn refusal(status: StatusCode, bytes: &[u8]) -> Stop {
    let message = serde_json::from_slice::<ErrorBody>(bytes)
        .map(|b| clean(&b.error))
        .unwrap_or_else(|_| format!("{status}: {}", clean(String::from_utf8_lossy(bytes).trim())));
    if status == StatusCode::UNAUTHORIZED {
        Stop::Usage(message)
    } else {
        Stop::Refused(message)
    }
}

fn segment(name: &str) -> String {
    // Process names are letters, digits, `_`, `-` and `.`; anything else is escaped.
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn command(client: &Client, command: &CtlCommand) -> Result<(), Stop> {
    let wait = |ready: bool| if ready { "?wait=ready" } else { "" };
    match command {
        CtlCommand::Status { json: as_json } => {
            let processes: Vec<ProcessView> =
                json(client, Method::GET, "/v1/processes", None).await?;
            if *as_json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&processes).expect("views serialize")
                );
            } else {
                let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
                print!("{}", table::render(&processes, colour));
                // The plugins' health is an extra: a server that cannot say does not fail the status.
                if let Ok(plugins) =
                    json::<Vec<serde_json::Value>>(client, Method::GET, "/v1/plugins", None).await
                {
                    print!("{}", table::render_plugins(&plugins));
                }
            }
        }
        CtlCommand::Start { names, wait_ready } => {
            for name in names {
                let path = format!("/v1/processes/{}/start{}", segment(name), wait(*wait_ready));
                let reply: ActionReply = json(client, Method::POST, &path, None).await?;
                report("started", &reply);
            }
        }
        CtlCommand::Stop { names } => {
            for name in names {
                let path = format!("/v1/processes/{}/stop", segment(name));
                let reply: ActionReply = json(client, Method::POST, &path, None).await?;
                report("stopped", &reply);
            }
        }
        CtlCommand::Restart { names, wait_ready } => {
            let body = serde_json::json!({ "processes": names });
            let path = format!("/v1/restart{}", wait(*wait_ready));
            let reply: ActionReply = json(client, Method::POST, &path, Some(&body)).await?;
            report("restarted", &reply);
        }
        CtlCommand::Logs {
            name,
            lines,
            follow,
        } => logs(client, name, *lines, *follow).await?,
        CtlCommand::Events => events(client).await?,
        CtlCommand::Reload => {
            let report: serde_json::Value = json(client, Method::POST, "/v1/reload", None).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("JSON prints")
            );
        }
        CtlCommand::Shutdown => {
            let _: serde_json::Value = json(client, Method::POST, "/v1/shutdown", None).await?;
            println!("pilot-host is shutting down");
        }
        CtlCommand::Plugin {
            name,
            path,
            method,
            data,
            content_type,
            include,
        } => {
            plugin(
                client,
                name,
                path,
                method,
                data.as_deref(),
                content_type,
                *include,
            )
            .await?
        }
    }
    Ok(())
}

/// `ctl plugin`: one request to a control plugin; exit 0 on a 2xx answer, 1 otherwise.
async fn plugin(
    client: &Client,
    name: &str,
    path: &str,
    method: &str,
    data: Option<&str>,
    content_type: &str,
    include: bool,
) -> Result<(), Stop> {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| {
        Stop::Usage(format!(
            "`-X {method}` is not an HTTP method; e.g. `-X POST`"
        ))
    })?;
    let body = match data {
        None => bytes::Bytes::new(),
        Some("-") => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .map_err(|e| Stop::Usage(format!("cannot read standard input: {e}")))?;
            buf.into()
        }
        Some(d) => match d.strip_prefix('@') {
            Some(file) => std::fs::read(file)
                .map_err(|e| Stop::Usage(format!("cannot read `{file}` for `-d @{file}`: {e}")))?
                .into(),
            None => bytes::Bytes::from(d.to_string()),
        },
    };
    let path = format!(
        "/plugins/{}/{}",
        segment(name),
        path.trim_start_matches('/')
    );
    let content_type = data.map(|_| content_type);
    let response = client.send_bytes(method, &path, content_type, body).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| Stop::Refused(format!("the answer's body broke off: {e}")))?;
    let mut out = std::io::stdout().lock();
    if include {
        let _ = writeln!(out, "{status}");
        for (k, v) in &headers {
            let _ = writeln!(out, "{k}: {}", String::from_utf8_lossy(v.as_bytes()));
        }
        let _ = writeln!(out);
    }
    if status.is_success() {
        let _ = out.write_all(&bytes);
        let _ = out.flush();
        return Ok(());
    }
    let is_plugin_answer = headers.contains_key(hyper::header::CONTENT_SECURITY_POLICY);
    if is_plugin_answer {
        let _ = out.write_all(&bytes);
        let _ = out.flush();
        return Err(Stop::Refused(format!(
            "control plugin `{name}` answered {status}"
        )));
    }
    Err(refusal(status, &bytes))
}

fn report(done: &str, reply: &ActionReply) {
    for p in &reply.processes {
        let (name, state) = (clean(&p.name), p.state.as_str());
        match p.pid {
            Some(pid) => println!("{done} `{name}`: {state}, pid {pid}"),
            None => println!("{done} `{name}`: {state}"),
        }
    }
}

async fn logs(client: &Client, name: &str, lines: usize, follow: bool) -> Result<(), Stop> {
    let path = format!("/v1/processes/{}/logs?tail={lines}", segment(name));
    if !follow {
        let reply: LogsReply = json(client, Method::GET, &path, None).await?;
        let mut out = std::io::stdout().lock();
        for line in reply.lines {
            if writeln!(out, "{}", clean(&line.text)).is_err() {
                break;
            }
        }
        return Ok(());
    }
    let response = client
        .send(Method::GET, &format!("{path}&follow=true"), None)
        .await?;
    stream(client, response, |event, data| match event {
        Some("missed") => {
            eprintln!("[{} lines missed]", clean(data));
            None
        }
        _ => Some(clean(
            &serde_json::from_str::<crate::control::model::LogLineView>(data)
                .map_or_else(|_| data.to_string(), |line| line.text),
        )),
    })
    .await
}

async fn events(client: &Client) -> Result<(), Stop> {
    let response = client.send(Method::GET, "/v1/events", None).await?;
    stream(client, response, |_, data| Some(clean(data))).await
}

/// Prints what `each` makes of every message of an event stream, until it ends or stdout closes.
async fn stream(
    client: &Client,
    response: hyper::Response<hyper::body::Incoming>,
    mut each: impl FnMut(Option<&str>, &str) -> Option<String>,
) -> Result<(), Stop> {
    if !response.status().is_success() {
        let status = response.status();
        let bytes = http_body_util::BodyExt::collect(response.into_body())
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        return Err(refusal(status, &bytes));
    }
    let mut out = std::io::stdout();
    read_events(response.into_body(), |event, data| {
        match each(event, data) {
            // A closed pipe (`ctl events | head`) ends the stream.
            Some(line) => writeln!(out, "{line}").and_then(|()| out.flush()).is_ok(),
            None => true,
        }
    })
    .await
    .map_err(|e| Stop::Refused(format!("the {} ended the stream: {e}", client.target())))
}
