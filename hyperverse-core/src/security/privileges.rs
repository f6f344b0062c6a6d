//! What privileges mean where they are enforced: `property:NAME:read` lets an agent
//! without `r` read the property `NAME` of a particle (the gate's `get`, a mechtron's
//! `hv_read`).

use super::Access;
use crate::particle::Properties;

/// The privilege that lets an agent read the property `key`: `property:KEY:read`.
pub fn property_read_privilege(key: &str) -> String {
    format!("property:{key}:read")
}

/// The properties an agent with `access` may read, out of `properties`: all of them
/// with `r` (owners and supers hold it), otherwise those named by its
/// `property:NAME:read` privileges. `None` when it holds neither `r` nor any such
/// privilege: it may read nothing of the particle.
pub fn readable_properties(access: &Access, properties: Properties) -> Option<Properties> {
    if access.permissions().particle.read {
        return Some(properties);
    }
    let Access::Enumerated(granted) = access else {
        return Some(properties);
    };
    let named: Vec<&str> = granted
        .privileges
        .iter()
        .filter_map(|p| p.strip_prefix("property:")?.strip_suffix(":read"))
        .collect();
    if named.is_empty() {
        return None;
    }
    Some(
        properties
            .into_iter()
            .filter(|(key, _)| named.contains(&key.as_str()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::particle::Property;
    use crate::security::EnumeratedAccess;

    fn properties() -> Properties {
        ["email", "description", "token-hash"]
            .into_iter()
            .map(|k| {
                let value = format!("{k}-value");
                (
                    k.to_string(),
                    Property {
                        value,
                        locked: false,
                    },
                )
            })
            .collect()
    }

    fn granted(perms: &str, privileges: &[&str]) -> Access {
        Access::Enumerated(EnumeratedAccess {
            privileges: privileges.iter().map(|p| p.to_string()).collect(),
            permissions: perms.parse().expect("test permissions"),
        })
    }

    fn keys(props: Option<Properties>) -> Option<Vec<String>> {
        props.map(|p| p.into_keys().collect())
    }

    #[test]
    fn r_reads_everything_and_privileges_name_properties() {
        let all = Some(vec![
            "description".into(),
            "email".into(),
            "token-hash".into(),
        ]);
        assert_eq!(keys(readable_properties(&Access::Owner, properties())), all);
        assert_eq!(keys(readable_properties(&Access::Super, properties())), all);
        let reader = granted("csd-Rwx", &[]);
        assert_eq!(keys(readable_properties(&reader, properties())), all);
        let email = granted("csd-rwX", &["property:email:read", "other:thing"]);
        assert_eq!(
            keys(readable_properties(&email, properties())),
            Some(vec!["email".into()])
        );
        let absent = granted("csd-rwx", &["property:phone:read"]);
        assert_eq!(
            keys(readable_properties(&absent, properties())),
            Some(vec![])
        );
        assert_eq!(
            readable_properties(&granted("csd-rwX", &["property:email:write"]), properties()),
            None
        );
        assert_eq!(readable_properties(&Access::none(), properties()), None);
        assert_eq!(property_read_privilege("email"), "property:email:read");
    }
}
