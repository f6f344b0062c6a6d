//! `hv`'s command line: the arguments, and the request each command stands for,
//! checked before anything is dialed (a bad point is a `400` without a connection).
//! A login token given as `--set token=SECRET` is hashed here (argon2id) and only its
//! hash is sent.

use std::fmt;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use drivers::user::{TOKEN_HASH, token_hash};
use hyperverse_core::particle::{PropertyMod, SetProperties};
use hyperverse_core::registry::Strategy;
use hyperverse_core::security::AccessGrantKind;
use hyperverse_core::wave::{Headers, Method, Substance};
use hyperverse_core::wire::{GatePublicKey, TransportMode};
use hyperverse_core::{Error, Kind, Point, Result, Selector};
use star_node::protocol::ClientRequest;

const DEFAULT_METHOD: &str = "Cmd<Bounce>";

/// The command line.
#[derive(Parser)]
#[command(
    name = "hv",
    version,
    about = "The command-line client of a Hyperverse star-node gate."
)]
pub(crate) struct Cli {
    /// The gate's address, host:port.
    #[arg(long, global = true, env = "HV_GATE", default_value = "127.0.0.1:7700")]
    pub(crate) gate: String,
    /// The gate's public key (`star-node --print-gate-key` prints it): the gate must
    /// prove it holds this key before hv sends anything, the token included.
    #[arg(long, global = true, env = "HV_GATE_KEY")]
    pub(crate) gate_key: Option<GatePublicKey>,
    /// `noise` (encrypted, the default) or `plain` (clear text, for a gate in plain
    /// mode on loopback).
    #[arg(long, global = true, env = "HV_TRANSPORT", default_value = "noise")]
    pub(crate) transport: TransportMode,
    /// A file holding the login token of the agent to act as (or set HV_TOKEN); with
    /// neither, hv acts as GLOBAL::anonymous.
    #[arg(long, global = true, env = "HV_TOKEN_FILE", value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Print the answer as JSON.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
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
pub(crate) enum Command {
    /// Create a particle and print its record.
    #[command(
        after_help = "Examples:\n  hv create localhost Space\n  hv create localhost:app App --set description='the shop'\n  hv create localhost:users:alice User --set token=alice-pw --set email=alice@example.com\n  hv create localhost:app:% Base            # the parent's next number\n  hv create localhost:shop App --by localhost:alice   # alice owns it"
    )]
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
    #[command(after_help = "Examples:\n  hv get localhost:app\n  hv --json get localhost:app")]
    Get {
        /// Which particle.
        point: String,
    },
    /// Print the particles matching a pattern.
    #[command(
        after_help = "Examples:\n  hv select 'localhost:**'\n  hv select 'localhost:app:**<Mechtron>'\n  hv select 'localhost+:**'          # localhost and all below"
    )]
    Select {
        /// The selector (`localhost:**`, `localhost:app:*<User>`, …).
        pattern: String,
    },
    /// Delete a particle and everything below it; prints the deleted points.
    #[command(after_help = "Examples:\n  hv delete localhost:app        # and everything below it")]
    Delete {
        /// Which particle.
        point: String,
    },
    /// Send a ping to a particle and print the reply body.
    #[command(
        after_help = "Examples:\n  hv ping localhost:app --body hello\n  hv ping localhost:app:counter --method 'Ext<Count>' --timeout 2s\n  hv ping localhost:app --header traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n  hv --json ping localhost:app:counter --method 'Cmd<Read>'   # a mechtron's state"
    )]
    Ping {
        /// The target particle.
        point: String,
        /// What is asked (`Cmd<Bounce>`, `Ext<Count>`, …).
        #[arg(long, default_value = DEFAULT_METHOD)]
        method: String,
        /// The body, sent as text (empty when absent).
        #[arg(long)]
        body: Option<String>,
        /// A wave header, KEY=VALUE; repeatable. `traceparent=00-TRACE-SPAN-01` makes
        /// the ping's spans join that trace (when the machines export traces).
        #[arg(long = "header", value_name = "KEY=VALUE")]
        headers: Vec<String>,
        /// How long the gate waits for the reply before answering 408 (`10s`, `500ms`).
        #[arg(long, value_name = "DURATION", default_value = "10s",
              value_parser = hyperverse_core::duration::parse)]
        timeout: std::time::Duration,
    },
    /// Send a one-way wave to a particle: no reply; done once the gate took it.
    #[command(
        after_help = "Examples:\n  hv signal localhost:app:counter --method 'Ext<Count>'\n  \
                            hv signal localhost:app:chat --method 'Ext<Say>' --body hello"
    )]
    Signal {
        /// The target particle.
        point: String,
        /// What is asked (`Ext<Count>`, …).
        #[arg(long, default_value = DEFAULT_METHOD)]
        method: String,
        /// The body, sent as text (empty when absent).
        #[arg(long)]
        body: Option<String>,
    },
    /// Print a shell completion script: `hv completions bash > /etc/bash_completion.d/hv`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Grant KIND on the particles matching ON_SELECTOR to the agents matching
    /// AGENT_SELECTOR; prints the grant id. It counts where its granter owns the
    /// particle or is super on it (`hv grants` says whether it does).
    #[command(
        after_help = "Examples:\n  hv grant localhost:users:alice 'localhost:app+:**' +csd-Rwx\n  hv grant 'localhost:app:users:**<User>' 'localhost:app:**<Mechtron>' '&csd-rwX' --by localhost:app\n  hv grant localhost:users:bob localhost:users:alice privilege:property:email:read\n  hv grant localhost:users:admin 'localhost+:**' super"
    )]
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
    #[command(
        after_help = "Examples:\n  hv revoke 'localhost:app#3'\n  hv revoke 'localhost:app#3' --by localhost:app"
    )]
    Revoke {
        /// The grant id, POINT#N (see `hv grants`).
        id: String,
        /// Revoke as this particle (one you own or are super on).
        #[arg(long, value_name = "POINT")]
        by: Option<String>,
    },
    /// Make OWNER the owner of every particle matching SELECTOR (super on each is
    /// needed); prints how many changed hands.
    #[command(after_help = "Examples:\n  hv chown 'localhost:app+:**' localhost:app")]
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
    #[command(
        after_help = "Examples:\n  hv grants\n  hv grants 'localhost:app+:**'\n  hv --json grants localhost:app"
    )]
    Grants {
        /// Whose grants (default: all, `+:**`).
        #[arg(default_value = "+:**")]
        selector: String,
    },
    /// Print what an agent may do on a particle.
    #[command(
        after_help = "Examples:\n  hv access localhost:users:alice localhost:app\n  hv --json access localhost:users:alice localhost:app"
    )]
    Access {
        /// The agent's point (`GLOBAL::anonymous`, a User).
        agent: String,
        /// The particle.
        point: String,
    },
    /// List the live stars: key, machine, kind, load.
    #[command(after_help = "Examples:\n  hv stars")]
    Stars,
    /// Move a particle, with its state, to another star.
    #[command(after_help = "Examples:\n  hv migrate localhost:app:counter '<<b>>::super'")]
    Migrate {
        /// The particle.
        point: String,
        /// The star key (`<<machine>>::role`, see `hv stars`).
        star: String,
    },
    /// Store a wasm module (`.wasm`, or `.wat` text compiled here) as an Artifact.
    #[command(
        after_help = "Examples:\n  hv publish counter.wasm localhost:counter-wasm\n  hv publish drivers/guests/echo.wat localhost:echo-wasm"
    )]
    Publish {
        /// The module file.
        file: std::path::PathBuf,
        /// The Artifact's point.
        point: String,
    },
    /// Build a Rust guest (written with the hyperverse_guest SDK, docs/guests.md) into a
    /// size-optimised `.wasm` module, checked against the guest ABI; needs a rustc with
    /// the wasm32-unknown-unknown target (Debian: rustc, libstd-rust-dev-wasm32, lld).
    /// Local: nothing is sent to a gate.
    #[command(
        after_help = "Examples:\n  hv build greeter.rs                      # greeter.wasm\n  hv build account.rs -o /tmp/account.wasm --stack-size 131072"
    )]
    Build {
        /// The guest's source (its crate root).
        source: std::path::PathBuf,
        /// Where to write the module (default: the source's path with `.wasm`).
        #[arg(short, long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        /// The guest's stack, in bytes (part of its memory, so of every snapshot).
        #[arg(long, value_name = "BYTES", default_value_t = crate::build::DEFAULT_STACK,
              value_parser = clap::value_parser!(u32).range(16_384..=16_777_216))]
        stack_size: u32,
    },
}

fn checked_create_point(text: String) -> Result<String> {
    text.strip_suffix(":%").unwrap_or(&text).parse::<Point>()?;
    Ok(text)
}

/// The request a command stands for; a `BadRequest` for arguments that do not parse.
/// The command line's definition (for completion scripts).
pub(crate) fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

pub(crate) fn request(command: Command) -> Result<ClientRequest> {
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
            headers,
            timeout,
        } => ClientRequest::Ping {
            to: point.parse()?,
            method: method.parse::<Method>()?,
            headers: wave_headers(&headers)?,
            body: body.map_or(Substance::Empty, Substance::Text),
            timeout_ms: u32::try_from(timeout.as_millis()).map_err(|_| {
                Error::bad_request(format!(
                    "--timeout {timeout:?} is longer than a ping may wait"
                ))
            })?,
        },
        Command::Signal {
            point,
            method,
            body,
        } => ClientRequest::Signal {
            to: point.parse()?,
            method: method.parse::<Method>()?,
            body: body.map_or(Substance::Empty, Substance::Text),
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
        Command::Build { .. } | Command::Completions { .. } => {
            return Err(Error::internal("a local command has no request"));
        }
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

/// `--header KEY=VALUE` arguments as wave headers.
fn wave_headers(args: &[String]) -> Result<Headers> {
    args.iter()
        .map(|arg| match arg.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(Error::bad_request(format!(
                "--header {arg:?} must look like KEY=VALUE"
            ))),
        })
        .collect()
}

/// A `--by POINT` argument, checked before connecting.
fn by_point(by: Option<String>) -> Result<Option<Point>> {
    by.map(|text| text.parse::<Point>().map_err(Into::into))
        .transpose()
}

/// The text printed for `answer`: readable lines, or with `json` the answer (for a
/// ping, the reply body) as JSON.
#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use drivers::user::{TokenCheck, check_hash};
    use hyperverse_core::wave::StatusCode;

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
    fn build_takes_a_source_an_output_and_a_bounded_stack() {
        let cli = Cli::try_parse_from(["hv", "build", "g.rs"]).unwrap();
        let Command::Build {
            source,
            out,
            stack_size,
        } = cli.command
        else {
            panic!("not a build");
        };
        assert_eq!((source, out), ("g.rs".into(), None));
        assert_eq!(stack_size, crate::build::DEFAULT_STACK);
        let cli = Cli::try_parse_from(["hv", "build", "g.rs", "-o", "x.wasm"]).unwrap();
        assert!(
            matches!(cli.command, Command::Build { out: Some(o), .. } if o == std::path::Path::new("x.wasm"))
        );
        for stack in ["10", "99999999", "lots"] {
            assert!(Cli::try_parse_from(["hv", "build", "g.rs", "--stack-size", stack]).is_err());
        }
    }

    #[test]
    fn headers_are_key_value_pairs() {
        let ClientRequest::Ping { headers, .. } = parse(&[
            "ping",
            "localhost:app",
            "--header",
            "traceparent=00-aa-bb-01",
            "--header",
            "x=a=b",
            "--header",
            "empty=",
        ])
        .unwrap() else {
            panic!("not a ping");
        };
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("empty", ""), ("traceparent", "00-aa-bb-01"), ("x", "a=b")]
        );
        for bad in ["novalue", "=value"] {
            let e = parse(&["ping", "localhost:app", "--header", bad]).unwrap_err();
            assert!(e.to_string().contains("KEY=VALUE"), "{e}");
        }
    }

    #[test]
    fn timeouts_are_durations_and_signals_parse() {
        let ClientRequest::Ping { timeout_ms, .. } =
            parse(&["ping", "localhost:app", "--timeout", "2s"]).unwrap()
        else {
            panic!("not a ping");
        };
        assert_eq!(timeout_ms, 2000);
        let ClientRequest::Ping { timeout_ms, .. } =
            parse(&["ping", "localhost:app", "--timeout", "250ms"]).unwrap()
        else {
            panic!("not a ping");
        };
        assert_eq!(timeout_ms, 250);
        assert!(parse(&["ping", "localhost:app", "--timeout", "soon"]).is_err());
        assert!(parse(&["ping", "localhost:app", "--timeout", "100d"]).is_err());
        let ClientRequest::Signal { to, method, body } = parse(&[
            "signal",
            "localhost:app",
            "--method",
            "Ext<Count>",
            "--body",
            "1",
        ])
        .unwrap() else {
            panic!("not a signal");
        };
        assert_eq!(
            to,
            "localhost:app".parse::<hyperverse_core::Point>().unwrap()
        );
        assert_eq!(method, Method::Ext("Count".into()));
        assert_eq!(body, Substance::Text("1".into()));
    }

    #[test]
    fn completion_scripts_name_every_command() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "hv", &mut script);
            let script = String::from_utf8(script).unwrap();
            for sub in ["ping", "signal", "grants", "chown", "build", "completions"] {
                assert!(script.contains(sub), "{shell:?} lacks {sub}");
            }
        }
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
}
