//! `hv --json`: every answer as plain JSON — objects with named fields, strings for
//! points, kinds, permissions and grant kinds — never serde's enum wrappers. The shapes
//! are documented in docs/operations.md ("hv --json") and kept by the tests below.

use hyperverse_core::particle::{Details, ParticleRecord, Properties, Stub};
use hyperverse_core::registry::StarEntry;
use hyperverse_core::security::{Access, IndexedAccessGrant};
use hyperverse_core::wave::Substance;
use serde_json::{Map, Value, json};
use star_node::protocol::{Answer, GrantState, ListedGrant};

/// The JSON of `answer`.
pub(crate) fn answer(answer: &Answer) -> Value {
    match answer {
        Answer::Body(body) => substance(body),
        Answer::Record(record) => self::record(record),
        Answer::Stubs(stubs) => stubs.iter().map(stub).collect(),
        Answer::Deleted(points) => points.iter().map(|p| json!(p.to_string())).collect(),
        Answer::Granted(id) => json!({ "id": id.to_string() }),
        Answer::Access(access) => self::access(access),
        Answer::Stars(stars) => stars.iter().map(star).collect(),
        Answer::Done => json!({}),
        Answer::Details(details) => self::details(details),
        Answer::Chowned(n) => json!({ "changed": n }),
        Answer::Grants(grants) => grants.iter().map(listed_grant).collect(),
    }
}

/// A reply body: `null` for none, a string for text, `{"hex": …}` for bytes, and the
/// plain JSON of what else a particle may answer (a `Cmd<Read>` state is an object:
/// `{"digest": …, "calls": …, …}`).
pub(crate) fn substance(body: &Substance) -> Value {
    match body {
        Substance::Empty => Value::Null,
        Substance::Text(text) => json!(text),
        Substance::Bin(bytes) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            json!({ "hex": hex })
        }
        Substance::Point(point) => json!(point.to_string()),
        Substance::Points(points) => points.iter().map(|p| json!(p.to_string())).collect(),
        Substance::Stub(s) => stub(s),
        Substance::Stubs(stubs) => stubs.iter().map(stub).collect(),
        Substance::Details(d) => details(d),
        Substance::Record(r) => record(r),
        Substance::Access(a) => access(a),
        Substance::Grants(grants) => grants.iter().map(grant).collect(),
        Substance::List(items) => items.iter().map(substance).collect(),
        Substance::Map(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), substance(value)))
                .collect(),
        ),
        Substance::Error(error) => json!({
            "error": { "status": error.status().0, "message": error.to_string() }
        }),
    }
}

fn stub(stub: &Stub) -> Value {
    json!({
        "point": stub.point.to_string(),
        "kind": stub.kind.to_string(),
        "status": stub.status.to_string(),
    })
}

fn properties(properties: &Properties) -> Value {
    let mut map = Map::new();
    for (key, property) in properties {
        map.insert(
            key.clone(),
            json!({ "value": property.value, "locked": property.locked }),
        );
    }
    Value::Object(map)
}

fn details(details: &Details) -> Value {
    let mut value = stub(&details.stub);
    value["properties"] = properties(&details.properties);
    value
}

fn record(record: &ParticleRecord) -> Value {
    let mut value = details(&record.details);
    let shown = |p: &Option<hyperverse_core::Point>| p.as_ref().map(|p| p.to_string());
    value["star"] = json!(shown(&record.location.star));
    value["host"] = json!(shown(&record.location.host));
    value["owner"] = json!(record.owner.to_string());
    value
}

fn star(entry: &StarEntry) -> Value {
    json!({
        "star": entry.star.to_string(),
        "machine": entry.machine,
        "kind": entry.kind.to_string(),
        "gate": entry.gate,
        "hosts": entry.hosts.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        "load": entry.load,
    })
}

/// `hv access --json`: `{"permissions", "super", "owner", "privileges"}` (owners and
/// supers hold every privilege: `["*"]`).
pub(crate) fn access(access: &Access) -> Value {
    let privileges: Vec<String> = match access {
        Access::Enumerated(e) => e.privileges.iter().cloned().collect(),
        _ => vec!["*".to_string()],
    };
    json!({
        "permissions": access.permissions().to_string(),
        "super": access.is_super(),
        "owner": access.is_owner(),
        "privileges": privileges,
    })
}

fn grant(grant: &IndexedAccessGrant) -> Value {
    let g = &grant.grant;
    json!({
        "id": grant.id.to_string(),
        "kind": g.kind.to_string(),
        "on": g.on_point.to_string(),
        "to": g.to_point.to_string(),
        "by": g.by_particle.to_string(),
    })
}

/// `hv grants --json`: a grant's fields, `counting`, and `why` it is ignored (`null`
/// when it counts).
pub(crate) fn listed_grant(listed: &ListedGrant) -> Value {
    let mut value = grant(&IndexedAccessGrant {
        id: listed.id.clone(),
        grant: listed.grant.clone(),
    });
    let (counting, why) = match &listed.state {
        GrantState::Counting => (true, None),
        GrantState::Ignored(why) => (false, Some(why.clone())),
    };
    value["counting"] = json!(counting);
    value["why"] = json!(why);
    value
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use hyperverse_core::particle::{ParticleLocation, Property, Status};
    use hyperverse_core::{BaseKind, Kind, StarSub};

    use super::*;

    fn record() -> ParticleRecord {
        let mut properties = Properties::new();
        properties.insert(
            "email".into(),
            Property {
                value: "a@b.c".into(),
                locked: true,
            },
        );
        ParticleRecord {
            details: Details {
                stub: Stub {
                    point: "localhost:users:alice".parse().unwrap(),
                    kind: Kind::User,
                    status: Status::Ready,
                },
                properties,
            },
            location: ParticleLocation {
                star: Some("<<a>>::super".parse().unwrap()),
                host: None,
            },
            owner: hyperverse_core::Point::hyperuser(),
        }
    }

    #[test]
    fn records_stars_and_small_answers_are_plain_objects() {
        assert_eq!(
            answer(&Answer::Record(record())),
            json!({
                "point": "localhost:users:alice", "kind": "User", "status": "Ready",
                "star": "<<a>>::super", "host": null, "owner": "GLOBAL::hyperuser",
                "properties": { "email": { "value": "a@b.c", "locked": true } }
            })
        );
        let star = StarEntry {
            star: "<<a>>::central".parse().unwrap(),
            kind: StarSub::Central,
            machine: "a".into(),
            gate: "127.0.0.1:7700".into(),
            hosts: vec![BaseKind::App],
            load: 3,
        };
        assert_eq!(
            answer(&Answer::Stars(vec![star])),
            json!([{ "star": "<<a>>::central", "machine": "a", "kind": "Central",
                     "gate": "127.0.0.1:7700", "hosts": ["App"], "load": 3 }])
        );
        assert_eq!(answer(&Answer::Done), json!({}));
        assert_eq!(answer(&Answer::Chowned(4)), json!({ "changed": 4 }));
        let id = "localhost#1".parse().unwrap();
        assert_eq!(answer(&Answer::Granted(id)), json!({ "id": "localhost#1" }));
        let deleted = Answer::Deleted(vec!["localhost:a".parse().unwrap()]);
        assert_eq!(answer(&deleted), json!(["localhost:a"]));
        let stubs = Answer::Stubs(vec![record().details.stub]);
        assert_eq!(
            answer(&stubs),
            json!([{ "point": "localhost:users:alice", "kind": "User", "status": "Ready" }])
        );
    }

    #[test]
    fn bodies_are_plain_values() {
        assert_eq!(substance(&Substance::Empty), Value::Null);
        assert_eq!(substance(&Substance::Text("pong".into())), json!("pong"));
        assert_eq!(
            substance(&Substance::Bin(vec![0, 255])),
            json!({ "hex": "00ff" })
        );
        let mut state = BTreeMap::new();
        state.insert("digest".to_string(), Substance::Text("ab".into()));
        state.insert("calls".to_string(), Substance::Text("3".into()));
        assert_eq!(
            substance(&Substance::Map(state)),
            json!({ "digest": "ab", "calls": "3" })
        );
        let point: hyperverse_core::Point = "localhost:x".parse().unwrap();
        assert_eq!(substance(&Substance::Point(point)), json!("localhost:x"));
        let error = Substance::Error(hyperverse_core::Error::forbidden("no"));
        assert_eq!(substance(&error)["error"]["status"], 403);
    }
}
