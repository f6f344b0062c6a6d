//! `hv`: the command-line client of a star-node gate.
//!
//! ```text
//! hv [--gate ADDR] [--gate-key KEY] [--transport noise|plain] [--token-file FILE] [--json] <command>
//!    token: HV_TOKEN or the file
//!   arguments ─request()─▶ ClientRequest ─GateClient─▶ gate ─▶ Answer ─render()─▶ stdout
//! ```
//!
//! Arguments are checked before anything is dialed, so a bad point is a `400` without a
//! connection. The login token is never an argument, which any local user could read
//! in the process list: it comes from `HV_TOKEN` or a file
//! ([`star_node::credentials`]). A User's login token given as `--set token=SECRET` is
//! hashed here (argon2id, [`drivers::user::token_hash`]) and only its hash is sent.
//! Exit status 0 on success; 1 on failure with one line on stderr,
//! `hv: <status> <reason>: <message>` (clap's own argument errors exit 2).
//!
//! [`args`] turns arguments into requests, [`render`] answers into text; this file
//! connects and asks. The connection is [`GateClient`]'s and the message shapes are
//! [`star_node::protocol`]'s.

mod args;
mod build;
mod json;
mod render;

use args::{Cli, Command, request};
use render::render;

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hyperverse_core::wire::{GatePublicKey, TransportMode};
use hyperverse_core::{Error, Result};
use star_node::client::{GateClient, GateClientConfig};
use star_node::credentials;
use star_node::protocol::{Answer, ClientRequest};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).and_then(|output| write_stdout(&output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", failure_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// Checks the arguments, asks the gate and renders its answer.
fn run(cli: Cli) -> Result<String> {
    match cli.command {
        Command::Build {
            source,
            out,
            stack_size,
        } => return build::build(&source, out, stack_size),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut args::command(), "hv", &mut script);
            return String::from_utf8(script)
                .map_err(|e| Error::internal(format!("the completion script: {e}")));
        }
        _ => {}
    }
    let request = request(cli.command)?;
    let token = credentials::client_token(cli.token_file.as_deref())
        .map_err(|e| Error::bad_request(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("starting the runtime: {e}")))?;
    let answer = runtime.block_on(async {
        let trust = (cli.transport, cli.gate_key);
        let client = connect(&cli.gate, trust, token.as_deref()).await?;
        perform(&client, request).await
    })?;
    render(&answer, cli.json)
}

/// Connects as `hv`. A gate that cannot be reached in time is unavailable, like one
/// that refuses the connection.
async fn connect(
    gate: &str,
    (transport, gate_key): (TransportMode, Option<GatePublicKey>),
    token: Option<&str>,
) -> Result<GateClient> {
    let config = GateClientConfig {
        name: "hv".into(),
        transport,
        gate_key,
        ..GateClientConfig::default()
    };
    GateClient::connect(gate, token, config)
        .await
        .map_err(|error| match error {
            Error::Timeout(message) => Error::Unavailable(message),
            other => other,
        })
}

/// Sends `request` through the typed call that checks its answer's shape.
async fn perform(client: &GateClient, request: ClientRequest) -> Result<Answer> {
    Ok(match request {
        ClientRequest::Ping {
            to,
            method,
            headers,
            body,
            timeout_ms,
        } => {
            let timeout = Duration::from_millis(u64::from(timeout_ms));
            Answer::Body(client.ping_with(to, method, headers, body, timeout).await?)
        }
        ClientRequest::Signal { to, method, body } => {
            client.signal(to, method, body).await?;
            Answer::Done
        }
        ClientRequest::Create {
            point,
            kind,
            properties,
            strategy,
            by,
        } => Answer::Record(
            client
                .create_as(point, kind, properties, strategy, by)
                .await?,
        ),
        ClientRequest::Get { point } => match client.request(ClientRequest::Get { point }).await? {
            answer @ (Answer::Record(_) | Answer::Details(_)) => answer,
            other => {
                return Err(Error::internal(format!(
                    "the gate answered get with {other:?}"
                )));
            }
        },
        ClientRequest::Select { selector } => Answer::Stubs(client.select(selector).await?),
        ClientRequest::Delete { point } => Answer::Deleted(client.delete(point).await?),
        ClientRequest::Grant { kind, on, to, by } => {
            Answer::Granted(client.grant_as(kind, on, to, by).await?)
        }
        ClientRequest::Revoke { id, by } => {
            client.revoke_as(id, by).await?;
            Answer::Done
        }
        ClientRequest::Chown { on, owner, by } => {
            Answer::Chowned(client.chown(on, owner, by).await?)
        }
        ClientRequest::Grants { selector } => Answer::Grants(client.grants(selector).await?),
        ClientRequest::Access { agent, point } => {
            Answer::Access(client.access(agent, point).await?)
        }
        ClientRequest::Stars => Answer::Stars(client.stars().await?),
        ClientRequest::Publish { point, bytes } => {
            Answer::Record(client.publish(point, bytes).await?)
        }
        ClientRequest::Migrate { point, star } => {
            Answer::Record(client.migrate(point, star).await?)
        }
    })
}

/// The text of a point to create, checked here so a typo fails before connecting: a
/// point, or a parent point followed by `:%`.
fn failure_line(error: &Error) -> String {
    let status = error.status();
    let message = error.to_string().replace(['\r', '\n'], " ");
    // `403 forbidden: forbidden: …` says it twice; keep the status's.
    let prefix = format!("{}: ", status.reason());
    let message = message.strip_prefix(&prefix).unwrap_or(&message);
    format!("hv: {status}: {message}")
}

/// Writes the output; a reader that went away (`hv select … | head`) is not a failure.
fn write_stdout(output: &str) -> Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Error::internal(format!("writing the output: {e}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_one_line_with_its_status() {
        let line = failure_line(&Error::forbidden("needs csd-Rwx,\nhas csd-rwx"));
        assert_eq!(
            line, "hv: 403 forbidden: needs csd-Rwx, has csd-rwx",
            "the status's words, once"
        );
        let line = failure_line(&Error::Unavailable("connecting to gate x: refused".into()));
        assert_eq!(line, "hv: 503 unavailable: connecting to gate x: refused");
        let line = failure_line(&Error::TooLarge {
            what: "frame".into(),
            size: 2,
            limit: 1,
        });
        assert!(
            line.starts_with("hv: 413 payload too large: too large: frame"),
            "{line}"
        );
    }
}
