//! `hv`'s output: each answer as readable lines, or with `--json` as plain JSON
//! ([`crate::json`]; for a ping, the reply body).

use hyperverse_core::particle::{Details, ParticleRecord, Properties, Stub};
use hyperverse_core::registry::StarEntry;
use hyperverse_core::security::Access;
use hyperverse_core::wave::Substance;
use hyperverse_core::{Error, Point, Result};
use star_node::protocol::{Answer, GrantState, ListedGrant};

pub(crate) fn render(answer: &Answer, json: bool) -> Result<String> {
    if json {
        let text = serde_json::to_string_pretty(&crate::json::answer(answer))
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
    let privileges = match access {
        Access::Enumerated(e) if e.privileges.is_empty() => "-".to_string(),
        Access::Enumerated(e) => e.privileges.iter().cloned().collect::<Vec<_>>().join(" "),
        _ => "*".to_string(),
    };
    format!(
        "permissions: {}\nsuper: {}\nowner: {}\nprivileges: {privileges}\n",
        access.permissions(),
        access.is_super(),
        access.is_owner(),
    )
}

/// One line per grant, `id kind on to by state`, in aligned columns; the state is
/// `counting` or `ignored: WHY`.
fn grants_table(grants: &[ListedGrant]) -> String {
    let rows: Vec<[String; 6]> = grants
        .iter()
        .map(|listed| {
            let grant = &listed.grant;
            let state = match &listed.state {
                GrantState::Counting => "counting".to_string(),
                GrantState::Ignored(why) => format!("ignored: {why}"),
            };
            [
                listed.id.to_string(),
                grant.kind.to_string(),
                grant.on_point.to_string(),
                grant.to_point.to_string(),
                grant.by_particle.to_string(),
                state,
            ]
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
#[cfg(test)]
mod tests {
    use hyperverse_core::particle::{Details, ParticleLocation, Properties, Property, Status};
    use hyperverse_core::{BaseKind, Kind, StarSub};

    use super::*;

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
        assert_eq!(text, "\"pong\"\n", "the body, as a plain JSON string");
        let deleted = Answer::Deleted(vec!["localhost:app".parse().unwrap()]);
        let text = render(&deleted, true).unwrap();
        assert_eq!(text, "[\n  \"localhost:app\"\n]\n", "no enum wrapper");
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
}
