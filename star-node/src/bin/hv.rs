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
//! This file turns arguments into requests and answers into text; the connection is
//! [`GateClient`]'s and the message shapes are [`star_node::protocol`]'s.

use hyperverse_core::wire::{GatePublicKey, TransportMode};
use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use drivers::user::{TOKEN_HASH, token_hash};
use hyperverse_core::particle::{
    Details, ParticleRecord, Properties, PropertyMod, SetProperties, Stub,
};
use hyperverse_core::registry::{StarEntry, Strategy};
use hyperverse_core::security::{Access, AccessGrantKind};
use hyperverse_core::wave::{Headers, Method, Substance};
use hyperverse_core::{Error, Kind, Point, Result, Selector};
use star_node::client::{GateClient, GateClientConfig};
use star_node::credentials;
use star_node::protocol::{Answer, ClientRequest, GrantState, ListedGrant};

/// The method a ping uses when `--method` is not given.
const DEFAULT_METHOD: &str = "Cmd<Bounce>";

/// The command line.
#[derive(Parser)]
#[command(
    name = "hv",
    version,
    about = "The command-line client of a Hyperverse star-node gate."
)]
struct Cli {
    /// The gate's address, host:port.
    #[arg(long, global = true, env = "HV_GATE", default_value = "127.0.0.1:7700")]
    gate: String,
    /// The gate's public key (`star-node --print-gate-key` prints it): the gate must
    /// prove it holds this key before hv sends anything, the token included.
    #[arg(long, global = true, env = "HV_GATE_KEY")]
    gate_key: Option<GatePublicKey>,
    /// `noise` (encrypted, the default) or `plain` (clear text, for a gate in plain
    /// mode on loopback).
    #[arg(long, global = true, env = "HV_TRANSPORT", default_value = "noise")]
    transport: TransportMode,
    /// A file holding the login token of the agent to act as (or set HV_TOKEN); with
    /// neither, hv acts as GLOBAL::anonymous.
    #[arg(long, global = true, env = "HV_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Print the answer as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

impl fmt::Debug for Cli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cli")
            .field("gate", &self.gate)
            .field("gate_key", &self.gate_key)
            .field("transport", &self.transport)
            .field("token_file", &self.token_file)
            .field("json", &self.json)
            .field("command", &self.command)
            .finish()
    }
}

/// What to ask the gate.
#[derive(Debug, Subcommand)]
enum Command {
    /// Create a particle and print its record.
    Create {
        /// Where; a last segment `%` takes the next number of the parent's sequence.
        point: String,
        /// What kind (`App`, `User`, `Star<Central>`, …).
        kind: String,
        /// A property, KEY=VALUE; `token=SECRET` sets a User's token hash instead.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Succeed with what is there if the particle exists with the same kind.
        #[arg(long)]
        ensure: bool,
        /// Create as this particle (one you own or are super on): it becomes the owner.
        #[arg(long, value_name = "POINT")]
        by: Option<String>,
    },
    /// Print a particle's record.
    Get {
        /// Which particle.
        point: String,
    },
    /// Print the particles matching a pattern.
    Select {
        /// The selector (`localhost:**`, `localhost:app:*<User>`, …).
        pattern: String,
    },
    /// Delete a particle and everything below it; prints the deleted points.
    Delete {
        /// Which particle.
        point: String,
    },
    /// Send a ping to a particle and print the reply body.
    Ping {
        /// The target particle.
        point: String,
        /// What is asked (`Cmd<Bounce>`, `Ext<Count>`, …).
        #[arg(long, default_value = DEFAULT_METHOD)]
        method: String,
        /// The body, sent as text (empty when absent).
        #[arg(long)]
        body: Option<String>,
        /// How long the gate waits for the reply before answering 408.
        #[arg(long = "timeout-ms", value_name = "N", default_value_t = 10_000)]
        timeout_ms: u32,
    },
    /// Grant KIND on the particles matching ON_SELECTOR to the agents matching
    /// AGENT_SELECTOR; prints the grant id. It counts where its granter owns the
    /// particle or is super on it (`hv grants` says whether it does).
    Grant {
        /// Which agents.
        agent_selector: String,
        /// On which particles.
        on_selector: String,
        /// `+csd-Rwx` adds the upper-case rights, `&csd-rwX` keeps only them (a
        /// restriction), `rwx`-style letters add those, `super`, or `privilege:NAME`
        /// (e.g. `privilege:property:email:read`).
        kind: String,
        /// Grant as this particle (one you own or are super on): it is the granter.
        #[arg(long, value_name = "POINT")]
        by: Option<String>,
    },
    /// Remove a grant: its granter may, and whoever owns the granter or is super on it.
    Revoke {
        /// The grant id, POINT#N (see `hv grants`).
        id: String,
        /// Revoke as this particle (one you own or are super on).
        #[arg(long, value_name = "POINT")]
        by: Option<String>,
    },
    /// Make OWNER the owner of every particle matching SELECTOR (super on each is
    /// needed); prints how many changed hands.
    Chown {
        /// Which particles (`localhost:app+:**`: the App and all below it).
        selector: String,
        /// The new owner.
        owner: String,
        /// Act as this particle (one you own or are super on).
        #[arg(long, value_name = "POINT")]
        by: Option<String>,
    },
    /// List the grants at the particles matching SELECTOR that you may read: id, kind,
    /// on, to, by, and whether it counts (or why it is ignored).
    Grants {
        /// Whose grants (default: all, `+:**`).
        #[arg(default_value = "+:**")]
        selector: String,
    },
    /// Print what an agent may do on a particle.
    Access {
        /// The agent's point (`GLOBAL::anonymous`, a User).
        agent: String,
        /// The particle.
        point: String,
    },
    /// List the live stars: key, machine, kind, load.
    Stars,
    /// Move a particle, with its state, to another star.
    Migrate {
        /// The particle.
        point: String,
        /// The star key (`<<machine>>::role`, see `hv stars`).
        star: String,
    },
    /// Store a wasm module (`.wasm`, or `.wat` text compiled here) as an Artifact.
    Publish {
        /// The module file.
        file: std::path::PathBuf,
        /// The Artifact's point.
        point: String,
    },
}

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
            body,
            timeout_ms,
            ..
        } => {
            let timeout = Duration::from_millis(u64::from(timeout_ms));
            Answer::Body(client.ping(to, method, body, timeout).await?)
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
fn checked_create_point(text: String) -> Result<String> {
    text.strip_suffix(":%").unwrap_or(&text).parse::<Point>()?;
    Ok(text)
}

/// The request a command stands for; a `BadRequest` for arguments that do not parse.
fn request(command: Command) -> Result<ClientRequest> {
    Ok(match command {
        Command::Create {
            point,
            kind,
            set,
            ensure,
            by,
        } => ClientRequest::Create {
            point: checked_create_point(point)?,
            kind: kind.parse::<Kind>()?,
            properties: property_mods(&set)?,
            strategy: if ensure {
                Strategy::Ensure
            } else {
                Strategy::Commit
            },
            by: by_point(by)?,
        },
        Command::Get { point } => ClientRequest::Get {
            point: point.parse()?,
        },
        Command::Select { pattern } => ClientRequest::Select {
            selector: pattern.parse()?,
        },
        Command::Delete { point } => ClientRequest::Delete {
            point: point.parse()?,
        },
        Command::Ping {
            point,
            method,
            body,
            timeout_ms,
        } => ClientRequest::Ping {
            to: point.parse()?,
            method: method.parse::<Method>()?,
            headers: Headers::new(),
            body: body.map_or(Substance::Empty, Substance::Text),
            timeout_ms,
        },
        Command::Grant {
            agent_selector,
            on_selector,
            kind,
            by,
        } => ClientRequest::Grant {
            kind: kind.parse::<AccessGrantKind>()?,
            on: on_selector.parse::<Selector>()?,
            to: agent_selector.parse::<Selector>()?,
            by: by_point(by)?,
        },
        Command::Revoke { id, by } => ClientRequest::Revoke {
            id: id.parse()?,
            by: by_point(by)?,
        },
        Command::Chown {
            selector,
            owner,
            by,
        } => ClientRequest::Chown {
            on: selector.parse()?,
            owner: owner.parse()?,
            by: by_point(by)?,
        },
        Command::Grants { selector } => ClientRequest::Grants {
            selector: selector.parse()?,
        },
        Command::Access { agent, point } => ClientRequest::Access {
            agent: agent.parse()?,
            point: point.parse::<Point>()?,
        },
        Command::Stars => ClientRequest::Stars,
        Command::Migrate { point, star } => ClientRequest::Migrate {
            point: point.parse()?,
            star: star.parse()?,
        },
        Command::Publish { file, point } => ClientRequest::Publish {
            point: point.parse()?,
            bytes: module_bytes(&file)?,
        },
    })
}

/// The bytes of a module file; a `.wat` file is compiled to wasm first.
fn module_bytes(file: &std::path::Path) -> Result<Vec<u8>> {
    let shown = file.display();
    let bytes =
        std::fs::read(file).map_err(|e| Error::bad_request(format!("cannot read {shown}: {e}")))?;
    if file.extension().is_some_and(|e| e == "wat") {
        return wat::parse_bytes(&bytes)
            .map(|wasm| wasm.into_owned())
            .map_err(|e| Error::bad_request(format!("{shown} is not valid WAT: {e}")));
    }
    Ok(bytes)
}

/// `--set KEY=VALUE` arguments as property changes. `token=SECRET` becomes
/// `token-hash=<hash of SECRET>`, so the token itself is never sent.
fn property_mods(args: &[String]) -> Result<SetProperties> {
    args.iter().map(|arg| property_mod(arg)).collect()
}

fn property_mod(arg: &str) -> Result<PropertyMod> {
    let Some((key, value)) = arg.split_once('=') else {
        return Err(Error::bad_request(format!(
            "--set {arg:?} must look like KEY=VALUE"
        )));
    };
    match key {
        "" => Err(Error::bad_request(format!(
            "--set {arg:?} has an empty key"
        ))),
        // The message must not echo the value: it is a secret.
        "token" if value.is_empty() => Err(Error::bad_request("--set token= needs a token")),
        "token" => Ok(PropertyMod::set(TOKEN_HASH, token_hash(value)?)),
        _ => Ok(PropertyMod::set(key, value)),
    }
}

/// A `--by POINT` argument, checked before connecting.
fn by_point(by: Option<String>) -> Result<Option<Point>> {
    by.map(|text| text.parse::<Point>().map_err(Into::into))
        .transpose()
}

/// The text printed for `answer`: readable lines, or with `json` the answer (for a
/// ping, the reply body) as JSON.
fn render(answer: &Answer, json: bool) -> Result<String> {
    if json {
        let text = match answer {
            Answer::Body(body) => serde_json::to_string_pretty(body),
            Answer::Access(access) => serde_json::to_string_pretty(&access_json(access)),
            Answer::Grants(grants) => {
                let rows: Vec<_> = grants.iter().map(grant_json).collect();
                serde_json::to_string_pretty(&rows)
            }
            other => serde_json::to_string_pretty(other),
        }
        .map_err(|e| Error::internal(format!("printing the answer as JSON: {e}")))?;
        return Ok(text + "\n");
    }
    Ok(match answer {
        Answer::Body(body) => body_text(body)?,
        Answer::Record(record) => record_text(record),
        Answer::Stubs(stubs) => stubs.iter().map(stub_line).collect(),
        Answer::Deleted(points) => points.iter().map(|p| format!("{p}\n")).collect(),
        Answer::Granted(id) => format!("{id}\n"),
        Answer::Access(access) => access_text(access),
        Answer::Stars(stars) => stars_table(stars),
        Answer::Done => String::new(),
        Answer::Details(details) => details_text(details),
        Answer::Chowned(n) => format!("{n}\n"),
        Answer::Grants(grants) => grants_table(grants),
    })
}

/// A reply body: text as is, bytes as lossy UTF-8, nothing for `Empty`, anything else
/// as JSON. Ends with a newline unless empty.
fn body_text(body: &Substance) -> Result<String> {
    let mut text = match body {
        Substance::Empty => return Ok(String::new()),
        Substance::Text(text) => text.clone(),
        Substance::Bin(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => serde_json::to_string_pretty(other)
            .map_err(|e| Error::internal(format!("printing the reply body as JSON: {e}")))?,
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// `hv access`: one `key: value` line each, in this order (a stable form for scripts):
/// `permissions` (`csd-rwx`, upper case = held), `super`, `owner` (`true`/`false`) and
/// `privileges` (space-separated, `-` for none; owners and supers hold every one:
/// `*`).
fn access_text(access: &Access) -> String {
    let json = access_json(access);
    format!(
        "permissions: {}\nsuper: {}\nowner: {}\nprivileges: {}\n",
        json.permissions,
        json.is_super,
        json.owner,
        if json.privileges.is_empty() {
            "-".to_string()
        } else {
            json.privileges.join(" ")
        }
    )
}

/// `hv access --json`: a plain object.
#[derive(serde::Serialize)]
struct AccessJson {
    permissions: String,
    #[serde(rename = "super")]
    is_super: bool,
    owner: bool,
    privileges: Vec<String>,
}

fn access_json(access: &Access) -> AccessJson {
    let privileges = match access {
        Access::Enumerated(e) => e.privileges.iter().cloned().collect(),
        _ => vec!["*".to_string()],
    };
    AccessJson {
        permissions: access.permissions().to_string(),
        is_super: access.is_super(),
        owner: access.is_owner(),
        privileges,
    }
}

/// `hv grants --json`: one plain object per grant.
#[derive(serde::Serialize)]
struct GrantJson {
    id: String,
    kind: String,
    on: String,
    to: String,
    by: String,
    counting: bool,
    why: Option<String>,
}

fn grant_json(listed: &ListedGrant) -> GrantJson {
    let grant = &listed.grant;
    let (counting, why) = match &listed.state {
        GrantState::Counting => (true, None),
        GrantState::Ignored(why) => (false, Some(why.clone())),
    };
    GrantJson {
        id: listed.id.to_string(),
        kind: grant.kind.to_string(),
        on: grant.on_point.to_string(),
        to: grant.to_point.to_string(),
        by: grant.by_particle.to_string(),
        counting,
        why,
    }
}

/// One line per grant, `id kind on to by state`, in aligned columns; the state is
/// `counting` or `ignored: WHY`.
fn grants_table(grants: &[ListedGrant]) -> String {
    let rows: Vec<[String; 6]> = grants
        .iter()
        .map(grant_json)
        .map(|g| {
            let state = match g.why {
                None => "counting".to_string(),
                Some(why) => format!("ignored: {why}"),
            };
            [g.id, g.kind, g.on, g.to, g.by, state]
        })
        .collect();
    let width = |column: usize| rows.iter().map(|r| r[column].len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..5).map(width).collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (cell, w) in row.iter().zip(&widths) {
                line += &format!("{cell:<w$}  ");
            }
            line + &row[5] + "\n"
        })
        .collect()
}

/// A record as an agent that may read only some properties sees it.
fn details_text(details: &Details) -> String {
    let stub = &details.stub;
    let mut text = format!(
        "point:  {}\nkind:   {}\nstatus: {}\n",
        stub.point, stub.kind, stub.status
    );
    text += &properties_text(&details.properties);
    text
}

fn properties_text(properties: &Properties) -> String {
    if properties.is_empty() {
        return "properties: none\n".to_string();
    }
    let mut text = "properties:\n".to_string();
    for (key, property) in properties {
        let locked = if property.locked { " (locked)" } else { "" };
        text += &format!("  {key} = {}{locked}\n", property.value);
    }
    text
}

fn record_text(record: &ParticleRecord) -> String {
    let stub = &record.details.stub;
    let or_none = |p: &Option<Point>| p.as_ref().map_or("-".to_string(), Point::to_string);
    let mut text = format!(
        "point:  {}\nkind:   {}\nstatus: {}\nstar:   {}\n",
        stub.point,
        stub.kind,
        stub.status,
        or_none(&record.location.star)
    );
    if record.location.host.is_some() {
        text += &format!("host:   {}\n", or_none(&record.location.host));
    }
    text += &format!("owner:  {}\n", record.owner);
    text += &properties_text(&record.details.properties);
    text
}

fn stub_line(stub: &Stub) -> String {
    format!("{}<{}> {}\n", stub.point, stub.kind, stub.status)
}

/// One line per star, `key machine kind load`, in aligned columns.
fn stars_table(stars: &[StarEntry]) -> String {
    let rows: Vec<[String; 4]> = stars
        .iter()
        .map(|s| {
            [
                s.star.to_string(),
                s.machine.clone(),
                s.kind.to_string(),
                s.load.to_string(),
            ]
        })
        .collect();
    let width = |column: usize| rows.iter().map(|r| r[column].len()).max().unwrap_or(0);
    let (key, machine, kind) = (width(0), width(1), width(2));
    rows.iter()
        .map(|[k, m, s, load]| format!("{k:<key$}  {m:<machine$}  {s:<kind$}  {load}\n"))
        .collect()
}

/// The one stderr line for a failure: `hv: 403 forbidden: forbidden: needs …`.
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
mod tests {
    use clap::CommandFactory;
    use drivers::user::{TokenCheck, check_hash};
    use hyperverse_core::particle::{Details, ParticleLocation, Properties, Property, Status};
    use hyperverse_core::wave::StatusCode;
    use hyperverse_core::{BaseKind, StarSub};

    use std::str::FromStr;

    use super::*;

    fn parse(args: &[&str]) -> Result<ClientRequest> {
        let cli = Cli::try_parse_from(std::iter::once("hv").chain(args.iter().copied()))
            .map_err(|e| Error::bad_request(e.to_string()))?;
        request(cli.command)
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn set_pairs_become_property_changes() {
        let set = property_mods(&["email=a@b.c".into(), "description=x=y".into()]).unwrap();
        assert_eq!(
            set,
            vec![
                PropertyMod::set("email", "a@b.c"),
                PropertyMod::set("description", "x=y"),
            ]
        );
    }

    /// The one property change `set` holds: the token hash, which `token` matches.
    fn assert_token_hash_of(set: &SetProperties, token: &str) {
        let [PropertyMod::Set { key, value, .. }] = set.as_slice() else {
            panic!("one set: {set:?}");
        };
        assert_eq!(key, TOKEN_HASH);
        assert_eq!(check_hash(value, token), TokenCheck::Valid, "{value}");
    }

    #[test]
    fn a_token_is_sent_only_as_its_hash() {
        let set = property_mods(&["token=s3cret".into()]).unwrap();
        assert_token_hash_of(&set, "s3cret");
        assert!(!format!("{set:?}").contains("s3cret"));
    }

    #[test]
    fn the_token_is_no_argument() {
        let refused = Cli::try_parse_from(["hv", "--token", "s3cret", "stars"]);
        assert!(refused.is_err(), "--token must not be taken");
        let cli = Cli::try_parse_from(["hv", "--token-file", "/run/hv/token", "stars"]).unwrap();
        assert_eq!(cli.token_file, Some(PathBuf::from("/run/hv/token")));
    }

    #[test]
    fn malformed_set_pairs_are_bad_requests() {
        for arg in ["email", "=value", "token="] {
            let error = property_mod(arg).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{arg}");
        }
    }

    fn grant_kind_of(kind: &str) -> Result<AccessGrantKind> {
        match parse(&["grant", "localhost:users:*", "localhost:app:**", kind])? {
            ClientRequest::Grant { kind, .. } => Ok(kind),
            other => panic!("not a grant: {other:?}"),
        }
    }

    #[test]
    fn grant_kinds_are_masks_super_or_privileges() {
        use hyperverse_core::security::{MaskKind, PermissionsMask};
        let mask = |kind, perms: &str| {
            AccessGrantKind::PermissionsMask(PermissionsMask {
                kind,
                permissions: perms.parse().unwrap(),
            })
        };
        assert_eq!(grant_kind_of("super").unwrap(), AccessGrantKind::Super);
        assert_eq!(grant_kind_of("rx").unwrap(), mask(MaskKind::Or, "csd-RwX"));
        assert_eq!(
            grant_kind_of("+csd-Rwx").unwrap(),
            mask(MaskKind::Or, "csd-Rwx")
        );
        assert_eq!(
            grant_kind_of("&csd-rwX").unwrap(),
            mask(MaskKind::And, "csd-rwX")
        );
        assert_eq!(
            grant_kind_of("CsD-rwX").unwrap(),
            mask(MaskKind::Or, "CsD-rwX")
        );
        assert_eq!(
            grant_kind_of("privilege:property:email:read").unwrap(),
            AccessGrantKind::Privilege("property:email:read".into())
        );
    }

    #[test]
    fn garbage_grant_kinds_are_bad_requests() {
        for kind in ["", "rwz", "superuser", "all", "privilege:", "&csd-rwz"] {
            let error = grant_kind_of(kind).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{kind:?}");
        }
    }

    #[test]
    fn by_names_the_particle_acted_as() {
        let by = Some(Point::from_str("localhost:app").unwrap());
        let ClientRequest::Grant { by: got, .. } = parse(&[
            "grant",
            "localhost:users:*",
            "localhost:app+:**",
            "+csd-Rwx",
            "--by",
            "localhost:app",
        ])
        .unwrap() else {
            panic!("not a grant");
        };
        assert_eq!(got, by);
        let ClientRequest::Chown { on, owner, by: got } = parse(&[
            "chown",
            "localhost:app+:**",
            "localhost:app",
            "--by",
            "localhost:app",
        ])
        .unwrap() else {
            panic!("not a chown");
        };
        assert_eq!(on, "localhost:app:+:**".parse::<Selector>().unwrap());
        assert_eq!((Some(owner), got), (by.clone(), by.clone()));
        let ClientRequest::Revoke { by: got, .. } =
            parse(&["revoke", "localhost:app#1", "--by", "localhost:app"]).unwrap()
        else {
            panic!("not a revoke");
        };
        assert_eq!(got, by);
        let ClientRequest::Create { by: got, .. } =
            parse(&["create", "localhost:app:x", "Base", "--by", "localhost:app"]).unwrap()
        else {
            panic!("not a create");
        };
        assert_eq!(got, by);
        let ClientRequest::Grants { selector } = parse(&["grants"]).unwrap() else {
            panic!("not grants");
        };
        assert_eq!(selector, "+:**".parse::<Selector>().unwrap());
        let error =
            parse(&["chown", "localhost:**", "localhost:app", "--by", "no way"]).unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn access_prints_one_stable_line_per_field_and_a_plain_json_object() {
        use hyperverse_core::security::EnumeratedAccess;
        let access = Access::Enumerated(EnumeratedAccess {
            privileges: ["property:email:read".to_string()].into(),
            permissions: "csd-RwX".parse().unwrap(),
        });
        assert_eq!(
            render(&Answer::Access(access.clone()), false).unwrap(),
            "permissions: csd-RwX\nsuper: false\nowner: false\nprivileges: property:email:read\n"
        );
        assert_eq!(
            render(&Answer::Access(Access::SuperOwner), false).unwrap(),
            "permissions: CSD-RWX\nsuper: true\nowner: true\nprivileges: *\n"
        );
        assert_eq!(
            render(&Answer::Access(Access::none()), false).unwrap(),
            "permissions: csd-rwx\nsuper: false\nowner: false\nprivileges: -\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&Answer::Access(access), true).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "permissions": "csd-RwX", "super": false, "owner": false,
                "privileges": ["property:email:read"]
            })
        );
    }

    #[test]
    fn grants_print_in_columns_with_their_state() {
        use hyperverse_core::security::AccessGrant;
        let listed = |seq, state| ListedGrant {
            id: format!("localhost:app#{seq}").parse().unwrap(),
            grant: AccessGrant {
                kind: "+csd-Rwx".parse().unwrap(),
                on_point: "localhost:app+:**".parse().unwrap(),
                to_point: "localhost:app:users:**<User>".parse().unwrap(),
                by_particle: "localhost:app".parse().unwrap(),
            },
            state,
        };
        let grants = vec![
            listed(1, GrantState::Counting),
            listed(12, GrantState::Ignored("not the owner".into())),
        ];
        assert_eq!(
            render(&Answer::Grants(grants.clone()), false).unwrap(),
            "localhost:app#1   +csd-Rwx  localhost:app:+:**  localhost:app:users:**<User>  localhost:app  counting\n\
             localhost:app#12  +csd-Rwx  localhost:app:+:**  localhost:app:users:**<User>  localhost:app  ignored: not the owner\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&Answer::Grants(grants), true).unwrap()).unwrap();
        assert_eq!(json[1]["counting"], false);
        assert_eq!(json[1]["why"], "not the owner");
        assert_eq!(json[0]["kind"], "+csd-Rwx");
        assert_eq!(json[0]["why"], serde_json::Value::Null);
    }

    #[test]
    fn create_uses_commit_unless_ensure() {
        let ClientRequest::Create { kind, strategy, .. } =
            parse(&["create", "localhost:app", "App"]).unwrap()
        else {
            panic!("not a create");
        };
        assert_eq!((kind, strategy), (Kind::App, Strategy::Commit));
        let ClientRequest::Create {
            kind,
            strategy,
            properties,
            ..
        } = parse(&[
            "create",
            "localhost:users:alice",
            "User",
            "--ensure",
            "--set",
            "token=pw",
        ])
        .unwrap()
        else {
            panic!("not a create");
        };
        assert_eq!((kind, strategy), (Kind::User, Strategy::Ensure));
        assert_token_hash_of(&properties, "pw");
    }

    #[test]
    fn a_ping_defaults_to_an_empty_bounce() {
        let ClientRequest::Ping {
            method,
            body,
            timeout_ms,
            ..
        } = parse(&["ping", "localhost:app"]).unwrap()
        else {
            panic!("not a ping");
        };
        assert_eq!(method, DEFAULT_METHOD.parse::<Method>().unwrap());
        assert_eq!(body, Substance::Empty);
        assert_eq!(timeout_ms, 10_000);
        let ClientRequest::Ping { method, body, .. } = parse(&[
            "ping",
            "localhost:app",
            "--method",
            "Ext<Count>",
            "--body",
            "hi",
        ])
        .unwrap() else {
            panic!("not a ping");
        };
        assert_eq!(method, Method::Ext("Count".into()));
        assert_eq!(body, Substance::Text("hi".into()));
    }

    #[test]
    fn bad_arguments_are_bad_requests_before_any_connection() {
        for args in [
            &["get", "not a point!"][..],
            &["create", "localhost:app", "Gizmo"],
            &["ping", "localhost:app", "--method", "Cmd<Dance>"],
            &["grant", "GLOBAL::anonymous", "localhost:**", "rwz"],
            &[
                "grant",
                "GLOBAL::anonymous",
                "localhost:**",
                "r",
                "--by",
                "bad point!",
            ],
            &["revoke", "localhost:app"],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{args:?}");
        }
    }

    #[test]
    fn grant_names_agents_then_particles() {
        let ClientRequest::Grant { on, to, .. } =
            parse(&["grant", "localhost:users:*", "localhost:app:**", "r"]).unwrap()
        else {
            panic!("not a grant");
        };
        assert_eq!(to, "localhost:users:*".parse::<Selector>().unwrap());
        assert_eq!(on, "localhost:app:**".parse::<Selector>().unwrap());
    }

    #[test]
    fn ping_bodies_print_as_text() {
        assert_eq!(body_text(&Substance::Empty).unwrap(), "");
        assert_eq!(
            body_text(&Substance::Text("pong".into())).unwrap(),
            "pong\n"
        );
        assert_eq!(
            body_text(&Substance::Text("two\n".into())).unwrap(),
            "two\n"
        );
        assert_eq!(
            body_text(&Substance::Bin(vec![b'o', b'k', 0xff])).unwrap(),
            "ok\u{fffd}\n"
        );
        let point = body_text(&Substance::Point("localhost:app".parse().unwrap())).unwrap();
        assert_eq!(point, "{\n  \"Point\": \"localhost:app\"\n}\n");
    }

    #[test]
    fn json_prints_the_answer_and_a_ping_its_body() {
        let text = render(&Answer::Body(Substance::Text("pong".into())), true).unwrap();
        assert_eq!(text, "{\n  \"Text\": \"pong\"\n}\n");
        let deleted = Answer::Deleted(vec!["localhost:app".parse().unwrap()]);
        let text = render(&deleted, true).unwrap();
        assert_eq!(text, "{\n  \"Deleted\": [\n    \"localhost:app\"\n  ]\n}\n");
    }

    #[test]
    fn records_and_stubs_print_readably() {
        let mut properties = Properties::new();
        properties.insert(
            "email".into(),
            Property {
                value: "a@b.c".into(),
                locked: true,
            },
        );
        let record = ParticleRecord {
            details: Details {
                stub: Stub {
                    point: "localhost:users:alice".parse().unwrap(),
                    kind: Kind::User,
                    status: Status::Ready,
                },
                properties,
            },
            location: ParticleLocation::default(),
            owner: Point::hyperuser(),
        };
        let text = render(&Answer::Record(record.clone()), false).unwrap();
        assert_eq!(
            text,
            "point:  localhost:users:alice\nkind:   User\nstatus: Ready\nstar:   -\n\
             owner:  GLOBAL::hyperuser\nproperties:\n  email = a@b.c (locked)\n"
        );
        let text = render(&Answer::Stubs(vec![record.details.stub]), false).unwrap();
        assert_eq!(text, "localhost:users:alice<User> Ready\n");
    }

    #[test]
    fn stars_print_in_aligned_columns() {
        let star = |key: &str, machine: &str, kind, load| StarEntry {
            star: key.parse().unwrap(),
            kind,
            machine: machine.into(),
            gate: "127.0.0.1:7700".into(),
            hosts: vec![BaseKind::App],
            load,
        };
        let text = stars_table(&[
            star("LOCAL::central", "m1", StarSub::Central, 3),
            star("LOCAL::s", "machine-two", StarSub::Super, 12),
        ]);
        assert_eq!(
            text,
            "LOCAL::central  m1           Central  3\n\
             LOCAL::s        machine-two  Super    12\n"
        );
    }

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
