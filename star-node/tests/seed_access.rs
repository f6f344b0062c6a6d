//! The seed's own access scenario (Starlane's `cosmic-registry-postgres` `test_access`),
//! replayed end to end through `hv` against a real cluster: registry-svc on three Redis
//! shards and two star-nodes, every request through a gate, as the hyperuser, a
//! superuser, an App and its Users logged in with their own tokens. The expected results
//! follow from the rules in docs/security.md ("The access model"), which documents this
//! scenario step by step.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;

const SUPERUSER: &str = "localhost:users:superuser";
const APP: &str = "localhost:app";
const SCOTT: &str = "localhost:app:users:scott";
const MECHTRON: &str = "localhost:app:mechtron";
const CAROL: &str = "localhost:users:carol";

const SU_TOKEN: &str = "localhost:users:superuser#su-pw";
const APP_TOKEN: &str = "localhost:app#app-pw";
const SCOTT_TOKEN: &str = "localhost:app:users:scott#scott-pw";
const CAROL_TOKEN: &str = "localhost:users:carol#carol-pw";

/// `hv` as `token`'s agent; panics with its stderr unless it succeeds; stdout.
fn hv_as(gate: SocketAddr, token: &str, args: &[&str]) -> String {
    let out = hv(gate, Some(token), args);
    assert!(
        out.status.success(),
        "hv {args:?} as {token:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `hv access AGENT POINT` prints, asked by the hyperuser: permissions, super,
/// owner, privileges.
fn access(gate: SocketAddr, agent: &str, point: &str) -> (String, bool, bool, String) {
    let text = hv_ok(gate, &["access", agent, point]);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {text:?}"))
            .to_string()
    };
    (
        field("permissions"),
        field("super") == "true",
        field("owner") == "true",
        field("privileges"),
    )
}

/// The permissions `agent` has on `point`, with super and owner both false.
fn rights(gate: SocketAddr, agent: &str, point: &str) -> String {
    let (perms, is_super, owner, _) = access(gate, agent, point);
    assert!(
        !is_super && !owner,
        "{agent} on {point}: not super, not owner"
    );
    perms
}

/// The id `hv grant` printed.
fn id(printed: String) -> String {
    printed.trim().to_string()
}

/// The `hv grants` line of grant `id`.
fn listed(gate: SocketAddr, selector: &str, id: &str) -> String {
    let text = hv_ok(gate, &["grants", selector]);
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .unwrap_or_else(|| panic!("{id} not in {text}"))
        .to_string()
}

#[test]
fn the_seeds_access_scenario_through_the_gate() {
    let cluster = Cluster::start(3000);
    let (a, b) = (cluster.gate_a(), cluster.gate_b());

    // The world: what the seed registers, owned as the seed has it. The hyperuser
    // creates it all, `--by` the particle that is to own each.
    hv_ok(a, &["create", "localhost", "Space"]);
    hv_ok(a, &["create", "localhost:users", "UserBase"]);
    hv_ok(a, &["create", SUPERUSER, "User", "--set", "token=su-pw"]);
    hv_ok(a, &["create", CAROL, "User", "--set", "token=carol-pw"]);
    let app = hv_ok(
        a,
        &[
            "create",
            APP,
            "App",
            "--set",
            "token=app-pw",
            "--by",
            SUPERUSER,
        ],
    );
    assert!(app.contains(&format!("owner:  {SUPERUSER}")), "{app}");
    hv_ok(
        a,
        &["create", "localhost:app:users", "UserBase", "--by", APP],
    );
    let (token, email) = ("token=scott-pw", "email=scott@example.com");
    hv_ok(
        a,
        &[
            "create", SCOTT, "User", "--set", token, "--set", email, "--by", APP,
        ],
    );
    let wasm = publish(a, "localhost", "echo");
    hv_ok(
        a,
        &["create", MECHTRON, "Mechtron", "--set", &wasm, "--by", APP],
    );

    // The seed's grants: super on localhost and all below to the superuser (in the
    // seed's spelling), then the App's masks and privilege, made by the superuser on
    // the App's behalf before the App owns localhost:app.
    hv_ok(a, &["grant", SUPERUSER, "localhost+:**", "super"]);
    let users = "localhost:app:users:**<User>";
    let g_read = id(hv_as(
        a,
        SU_TOKEN,
        &["grant", users, "localhost:app+:**", "+csd-Rwx", "--by", APP],
    ));
    hv_as(
        a,
        SU_TOKEN,
        &[
            "grant",
            users,
            "localhost:app:**<Mechtron>",
            "+csd-rwX",
            "--by",
            APP,
        ],
    );
    let g_all = id(hv_as(
        a,
        SU_TOKEN,
        &["grant", SCOTT, SUPERUSER, "+CSD-RWX", "--by", APP],
    ));
    hv_as(
        a,
        SU_TOKEN,
        &[
            "grant",
            "localhost:app:**<Mechtron>",
            users,
            "privilege:property:email:read",
            "--by",
            APP,
        ],
    );

    // Who is super, who owns.
    assert!(access(a, "GLOBAL::hyperuser", SUPERUSER).1);
    assert!(access(a, SUPERUSER, "localhost").1, "super on localhost");
    let (perms, is_super, owner, _) = access(b, SUPERUSER, APP);
    assert_eq!((perms.as_str(), is_super, owner), ("CSD-RWX", true, true));
    let (perms, is_super, owner, _) = access(a, APP, SCOTT);
    assert_eq!(
        (perms.as_str(), is_super, owner),
        ("CSD-RWX", false, true),
        "the App owns scott"
    );

    // The App owns neither the superuser nor (yet) itself: its grants there are ignored.
    assert_eq!(rights(a, SCOTT, SUPERUSER), "csd-rwx");
    assert_eq!(
        rights(a, SCOTT, APP),
        "csd-rwx",
        "the App is not yet the owner of localhost:app"
    );
    assert!(
        listed(a, APP, &g_read).contains("ignored"),
        "{}",
        listed(a, APP, &g_read)
    );
    assert!(listed(a, SUPERUSER, &g_all).contains("ignored"));

    // Only a super may change owners: scott may not, the superuser may.
    let refused = hv_fails(
        a,
        Some(SCOTT_TOKEN),
        &["chown", "localhost:app+:**", APP],
        403,
    );
    assert!(refused.contains("super"), "{refused}");
    assert_eq!(
        hv_as(b, SU_TOKEN, &["chown", "localhost:app:+:**", APP]).trim(),
        "4"
    );

    // Now the App owns localhost:app and all below it: its grants count.
    assert_eq!(rights(a, SCOTT, APP), "csd-Rwx");
    assert_eq!(
        rights(b, SCOTT, SUPERUSER),
        "csd-rwx",
        "still not the App's"
    );
    assert_eq!(rights(a, SCOTT, MECHTRON), "csd-RwX", "two Or masks");
    assert!(listed(a, APP, &g_read).ends_with("counting"));

    // The App, logged in with its own token, restricts its users on its mechtrons.
    let g_and = id(hv_as(
        a,
        APP_TOKEN,
        &["grant", users, "localhost:app:**<Mechtron>", "&csd-rwX"],
    ));
    assert_eq!(
        rights(a, SCOTT, MECHTRON),
        "csd-rwX",
        "the And mask takes R away"
    );
    let (perms, _, _, privileges) = access(a, MECHTRON, SCOTT);
    assert_eq!(perms, "csd-rwx");
    assert_eq!(
        privileges, "property:email:read",
        "the mechtron's privilege"
    );

    // A mechtron acts as itself when it reads (hv_read): the App's reader, holding the
    // privilege by G5 like every mechtron of the App, reads scott's email and nothing
    // else, and nothing of the superuser's.
    let reader_wasm = publish(a, "localhost", "reader");
    let reader = "localhost:app:reader";
    hv_ok(
        a,
        &[
            "create",
            reader,
            "Mechtron",
            "--set",
            &reader_wasm,
            "--by",
            APP,
        ],
    );
    let read = |point: &str| {
        let asked = hv_ok(
            b,
            &["ping", reader, "--method", "Ext<Read>", "--body", point],
        );
        assert_eq!(asked.trim(), "asked");
        let mut last = String::new();
        eventually(Duration::from_secs(10), "the read's answer", || {
            last = hv_ok(a, &["ping", reader, "--method", "Ext<Last>"]);
            !last.trim().is_empty()
        });
        hv_ok(a, &["ping", reader, "--method", "Ext<Got>"]);
        last
    };
    assert_eq!(read(SCOTT).trim(), "200\nemail=scott@example.com");
    let refused = read(SUPERUSER);
    assert!(refused.starts_with("403 "), "{refused}");

    // A privilege is what `get` shows: carol, without r, reads scott's email only.
    hv_fails(b, Some(CAROL_TOKEN), &["get", SCOTT], 403);
    hv_as(
        a,
        APP_TOKEN,
        &["grant", CAROL, SCOTT, "privilege:property:email:read"],
    );
    let got = hv_as(b, CAROL_TOKEN, &["get", SCOTT]);
    assert!(got.contains("email = scott@example.com"), "{got}");
    assert!(
        !got.contains("token-hash") && !got.contains("owner:"),
        "{got}"
    );
    let full = hv_as(a, SU_TOKEN, &["get", SCOTT]);
    assert!(
        full.contains("token-hash") && full.contains(&format!("owner:  {APP}")),
        "{full}"
    );

    // Removal: not by a grantee, not by an agent super only below the grant, but by
    // the granter or an agent with full access on it.
    hv_ok(a, &["grant", CAROL, "localhost:app:users:+:**", "super"]);
    hv_fails(a, Some(SCOTT_TOKEN), &["revoke", &g_and], 403);
    hv_fails(a, Some(CAROL_TOKEN), &["revoke", &g_and], 403);
    hv_as(a, SU_TOKEN, &["revoke", &g_and]);
    assert_eq!(
        rights(a, SCOTT, MECHTRON),
        "csd-RwX",
        "the restriction is gone"
    );
    hv_as(a, APP_TOKEN, &["revoke", &g_read]);
    assert_eq!(rights(a, SCOTT, APP), "csd-rwx");

    // The JSON form of an access answer is a plain object.
    let json: serde_json::Value =
        serde_json::from_str(&hv_ok(a, &["--json", "access", MECHTRON, SCOTT])).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "permissions": "csd-rwx", "super": false, "owner": false,
            "privileges": ["property:email:read"]
        })
    );
}
