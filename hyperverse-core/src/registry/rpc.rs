//! The registry RPC protocol: the typed messages a [`RegistryClient`](super::client) and
//! registry-svc exchange after the [handshake](crate::wire::handshake).
//!
//! Every frame carries a `u64` id chosen by the client, so one connection carries many
//! concurrent requests and answers may come back in any order:
//!
//! ```text
//! client ── RequestFrame  { id, request: Request }                  ──▶ server
//! client ◀── ResponseFrame { id, response: Result<Response, Error> } ── server
//! ```
//!
//! Each operation of [`RegistryApi`] has a request struct (owned fields), a [`Request`]
//! variant and a [`Response`] variant of the same name; its [`Rpc`] impl names the
//! response type, so a call site cannot expect the wrong answer. A peer that answers with
//! another variant gets an [`Error::Internal`] at run time. The whole table is one macro
//! invocation below; [`dispatch`] carries a request out against any backend.
//!
//! The table also says, once per operation, whether a request is safe to send again
//! when its connection was lost before the answer came ([`Rpc::RESEND`],
//! [`Request::may_resend`]): `resend` for every read, for writes that set a value (doing
//! them twice leaves what doing them once does) and for `register`, which carries a
//! request id the registry recognises ([`Registration::request_id`]); `once` for writes
//! that would apply twice (`grant`, `remove_access`, `delete`, `sequence`, `swap_star`).
//!
//! This module owns the message shapes only: no sockets, no tasks.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::{ArtifactMeta, Registration, RegistryApi, StarEntry};
use crate::error::{Error, Result};
use crate::particle::{self, Details, ParticleRecord, Properties, Status, Stub};
use crate::point::Point;
use crate::security::{self, AccessGrant, GrantId, IndexedAccessGrant};
use crate::selector::Selector;
use crate::wave::Agent;

/// The largest handshake frame either side of the registry RPC accepts.
pub const HANDSHAKE_MAX_FRAME: usize = 4096;

/// A request and the id its answer will carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Chosen by the client, unique among its requests in flight on the connection.
    pub id: u64,
    /// What is asked.
    pub request: Request,
}

/// The answer to the request with the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// The id of the request answered.
    pub id: u64,
    /// The backend's answer, or its error.
    pub response: Result<Response, Error>,
}

/// A request type that names its response type.
pub trait Rpc: Into<Request> {
    /// What a successful call returns.
    type Response;

    /// The snake_case operation name (as [`Request::op`]).
    const OP: &'static str;

    /// Whether the request may be sent again after its connection was lost with it in
    /// flight: doing it twice leaves the registry as doing it once does.
    const RESEND: bool;

    /// The typed value inside `response`; `Internal` if it answers another operation.
    fn unwrap_response(response: Response) -> Result<Self::Response>;
}

fn mismatch(asked: &str, answered: &str) -> Error {
    Error::internal(format!(
        "registry answered a `{asked}` request with a `{answered}` response"
    ))
}

/// `resend` (safe to send again after a lost connection) or `once`, as a `bool`.
macro_rules! resend {
    (resend) => {
        true
    };
    (once) => {
        false
    };
}

/// Defines, from one table, the request structs, [`Request`], [`Response`], their
/// [`Rpc`] impls and [`dispatch`].
macro_rules! registry_rpc {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident = $op:literal, $resend:ident { $($field:ident : $ty:ty),* $(,)? } -> $response:ty
            => |$api:ident, $req:ident| $call:expr;
    )+) => {
        $(
            $(#[doc = $doc])*
            #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
            pub struct $name { $(pub $field: $ty),* }

            impl From<$name> for Request {
                fn from(request: $name) -> Self {
                    Request::$name(request)
                }
            }

            impl Rpc for $name {
                type Response = $response;
                const OP: &'static str = $op;
                const RESEND: bool = resend!($resend);

                fn unwrap_response(response: Response) -> Result<$response> {
                    match response {
                        Response::$name(value) => Ok(value),
                        other => Err(mismatch($op, other.op())),
                    }
                }
            }
        )+

        /// Every operation's snake_case name, in the table's order (metric labels are
        /// initialised from it, so every series exists from the start).
        pub const OPS: &[&str] = &[$($op),+];

        /// A request to the registry: one variant per operation.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub enum Request {
            $( $(#[doc = $doc])* $name($name), )+
        }

        /// A successful answer: the variant of the same name as the request's.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub enum Response {
            $( $name($response), )+
        }

        impl Request {
            /// The snake_case operation name, for logs and metric labels.
            pub fn op(&self) -> &'static str {
                match self {
                    $( Request::$name(_) => $op, )+
                }
            }

            /// Whether this request may be sent again after its connection was lost
            /// with it in flight ([`Rpc::RESEND`]).
            pub fn may_resend(&self) -> bool {
                match self {
                    $( Request::$name(_) => <$name as Rpc>::RESEND, )+
                }
            }
        }

        impl Response {
            /// The snake_case name of the operation this answers.
            pub fn op(&self) -> &'static str {
                match self {
                    $( Response::$name(_) => $op, )+
                }
            }
        }

        /// Carries `request` out against `api` (the server side of every call).
        pub async fn dispatch(api: &dyn RegistryApi, request: Request) -> Result<Response> {
            match request {
                $(
                    Request::$name($req) => {
                        let $api = api;
                        let answer: Result<$response> = $call;
                        answer.map(Response::$name)
                    }
                )+
            }
        }
    };
}

registry_rpc! {
    /// [`RegistryApi::register`].
    Register = "register", resend { registration: Registration } -> Details
        => |api, r| api.register(&r.registration).await;
    /// [`RegistryApi::assign_star`].
    AssignStar = "assign_star", resend { point: Point, star: Point } -> ()
        => |api, r| api.assign_star(&r.point, &r.star).await;
    /// [`RegistryApi::put_state`].
    PutState = "put_state", resend { point: Point, state: ByteBuf } -> ()
        => |api, r| api.put_state(&r.point, Bytes::from(r.state.into_vec())).await;
    /// [`RegistryApi::get_state`].
    GetState = "get_state", resend { point: Point } -> Option<ByteBuf>
        => |api, r| api.get_state(&r.point).await.map(|s| s.map(|b| ByteBuf::from(b.to_vec())));
    /// [`RegistryApi::swap_star`].
    SwapStar = "swap_star", once { point: Point, expected: Option<Point>, star: Point } -> bool
        => |api, r| api.swap_star(&r.point, r.expected.as_ref(), &r.star).await;
    /// [`RegistryApi::assign_host`].
    AssignHost = "assign_host", resend { point: Point, host: Point } -> ()
        => |api, r| api.assign_host(&r.point, &r.host).await;
    /// [`RegistryApi::set_status`].
    SetStatus = "set_status", resend { point: Point, status: Status } -> ()
        => |api, r| api.set_status(&r.point, r.status).await;
    /// [`RegistryApi::set_properties`].
    SetProperties = "set_properties", resend { point: Point, changes: particle::SetProperties } -> ()
        => |api, r| api.set_properties(&r.point, &r.changes).await;
    /// [`RegistryApi::sequence`].
    Sequence = "sequence", once { point: Point } -> u64
        => |api, r| api.sequence(&r.point).await;
    /// [`RegistryApi::get_properties`].
    GetProperties = "get_properties", resend { point: Point } -> Properties
        => |api, r| api.get_properties(&r.point).await;
    /// [`RegistryApi::record`].
    Record = "record", resend { point: Point } -> ParticleRecord
        => |api, r| api.record(&r.point).await;
    /// [`RegistryApi::select`].
    Select = "select", resend { selector: Selector } -> Vec<Stub>
        => |api, r| api.select(&r.selector).await;
    /// [`RegistryApi::children`].
    Children = "children", resend { point: Point } -> Vec<Stub>
        => |api, r| api.children(&r.point).await;
    /// [`RegistryApi::delete`].
    Delete = "delete", once { point: Point } -> Vec<Point>
        => |api, r| api.delete(&r.point).await;
    /// [`RegistryApi::grant`].
    Grant = "grant", once { grant: AccessGrant } -> GrantId
        => |api, r| api.grant(&r.grant).await;
    /// [`RegistryApi::access`].
    Access = "access", resend { agent: Agent, point: Point } -> security::Access
        => |api, r| api.access(&r.agent, &r.point).await;
    /// [`RegistryApi::chown`].
    Chown = "chown", resend { on: Selector, owner: Point, by: Agent } -> u64
        => |api, r| api.chown(&r.on, &r.owner, &r.by).await;
    /// [`RegistryApi::list_access`].
    ListAccess = "list_access", resend { to: Option<Point>, point: Point } -> Vec<IndexedAccessGrant>
        => |api, r| api.list_access(r.to.as_ref(), &r.point).await;
    /// [`RegistryApi::grants_at`].
    GrantsAt = "grants_at", resend { point: Point } -> Vec<IndexedAccessGrant>
        => |api, r| api.grants_at(&r.point).await;
    /// [`RegistryApi::remove_access`].
    RemoveAccess = "remove_access", once { id: GrantId, by: Agent } -> ()
        => |api, r| api.remove_access(&r.id, &r.by).await;
    /// [`RegistryApi::register_star`].
    RegisterStar = "register_star", resend { entry: StarEntry } -> ()
        => |api, r| api.register_star(&r.entry).await;
    /// [`RegistryApi::star_heartbeat`].
    StarHeartbeat = "star_heartbeat", resend { star: Point, load: u64 } -> ()
        => |api, r| api.star_heartbeat(&r.star, r.load).await;
    /// [`RegistryApi::list_stars`].
    ListStars = "list_stars", resend {} -> Vec<StarEntry>
        => |api, _r| api.list_stars().await;
    /// [`RegistryApi::deregister_star`].
    DeregisterStar = "deregister_star", resend { star: Point } -> ()
        => |api, r| api.deregister_star(&r.star).await;
    /// [`RegistryApi::put_artifact`].
    PutArtifact = "put_artifact", resend { point: Point, bytes: ByteBuf } -> ArtifactMeta
        => |api, r| api.put_artifact(&r.point, Bytes::from(r.bytes.into_vec())).await;
    /// [`RegistryApi::get_artifact`].
    GetArtifact = "get_artifact", resend { point: Point } -> ByteBuf
        => |api, r| api.get_artifact(&r.point).await.map(|b| ByteBuf::from(Vec::from(b)));
    /// A health check: answered by the server without touching the backend.
    Ping = "ping", resend {} -> ()
        => |_api, _r| Ok(());
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bytes::BytesMut;
    use tokio_util::codec::{Decoder, Encoder};

    use super::*;
    use crate::kind::Kind;
    use crate::wire::FrameCodec;

    fn p(s: &str) -> Point {
        s.parse().expect("test points parse")
    }

    #[test]
    fn a_mismatched_answer_is_internal() {
        let err = Record::unwrap_response(Response::Ping(())).unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err}");
        assert!(err.to_string().contains("`record`") && err.to_string().contains("`ping`"));
        assert_eq!(Sequence::unwrap_response(Response::Sequence(7)), Ok(7));
    }

    #[test]
    fn op_names_are_distinct_snake_case() {
        let requests: Vec<Request> = vec![
            Ping {}.into(),
            ListStars {}.into(),
            Sequence { point: p("a") }.into(),
            StarHeartbeat {
                star: p("a"),
                load: 1,
            }
            .into(),
        ];
        let ops: BTreeSet<_> = requests.iter().map(Request::op).collect();
        assert_eq!(ops.len(), requests.len());
        assert!(ops.contains("star_heartbeat") && ops.contains("list_stars"));
        assert_eq!(<PutArtifact as Rpc>::OP, "put_artifact");
    }

    #[test]
    fn only_writes_that_would_apply_twice_are_sent_once() {
        let once = [
            (Grant::OP, Grant::RESEND),
            (RemoveAccess::OP, RemoveAccess::RESEND),
            (Delete::OP, Delete::RESEND),
            (Sequence::OP, Sequence::RESEND),
            (SwapStar::OP, SwapStar::RESEND),
        ];
        for (op, resend) in once {
            assert!(!resend, "{op} applies twice if resent");
        }
        let resend = [
            (Register::OP, Register::RESEND),
            (AssignStar::OP, AssignStar::RESEND),
            (PutState::OP, PutState::RESEND),
            (GetState::OP, GetState::RESEND),
            (AssignHost::OP, AssignHost::RESEND),
            (SetStatus::OP, SetStatus::RESEND),
            (SetProperties::OP, SetProperties::RESEND),
            (GetProperties::OP, GetProperties::RESEND),
            (Record::OP, Record::RESEND),
            (Select::OP, Select::RESEND),
            (Children::OP, Children::RESEND),
            (Access::OP, Access::RESEND),
            (Chown::OP, Chown::RESEND),
            (ListAccess::OP, ListAccess::RESEND),
            (GrantsAt::OP, GrantsAt::RESEND),
            (RegisterStar::OP, RegisterStar::RESEND),
            (StarHeartbeat::OP, StarHeartbeat::RESEND),
            (ListStars::OP, ListStars::RESEND),
            (DeregisterStar::OP, DeregisterStar::RESEND),
            (PutArtifact::OP, PutArtifact::RESEND),
            (GetArtifact::OP, GetArtifact::RESEND),
            (Ping::OP, Ping::RESEND),
        ];
        for (op, resend) in resend {
            assert!(resend, "{op} is safe to resend");
        }
        assert!(!Request::from(Sequence { point: p("a") }).may_resend());
        assert!(Request::from(Record { point: p("a") }).may_resend());
    }

    /// `Registration` as it was before it carried a request id, and a request enum
    /// with just its `Register` variant: what an older peer sends and reads.
    mod before_request_ids {
        use serde::{Deserialize, Serialize};

        use crate::kind::Kind;
        use crate::particle::{SetProperties, Status};
        use crate::point::Point;
        use crate::registry::Strategy;

        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct Registration {
            pub point: Point,
            pub kind: Kind,
            pub properties: SetProperties,
            pub owner: Point,
            pub strategy: Strategy,
            pub status: Status,
        }

        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct Register {
            pub registration: Registration,
        }

        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub enum Request {
            Register(Register),
        }

        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct RequestFrame {
            pub id: u64,
            pub request: Request,
        }
    }

    fn registration() -> Registration {
        let mut registration = Registration::new(p("localhost:a"), Kind::Base, Point::hyperuser());
        registration.properties = vec![crate::particle::PropertyMod::set("description", "a")];
        registration.strategy = crate::registry::Strategy::Ensure;
        registration
    }

    #[test]
    fn a_register_without_a_request_id_from_an_older_peer_still_decodes() {
        let new = registration();
        let old = before_request_ids::RequestFrame {
            id: 9,
            request: before_request_ids::Request::Register(before_request_ids::Register {
                registration: before_request_ids::Registration {
                    point: new.point.clone(),
                    kind: new.kind,
                    properties: new.properties.clone(),
                    owner: new.owner.clone(),
                    strategy: new.strategy,
                    status: new.status,
                },
            }),
        };
        let mut buf = BytesMut::new();
        FrameCodec::<before_request_ids::RequestFrame, ()>::default()
            .encode(old, &mut buf)
            .unwrap();
        let decoded = FrameCodec::<(), RequestFrame>::default()
            .decode(&mut buf)
            .unwrap();
        let expected = RequestFrame {
            id: 9,
            request: Register { registration: new }.into(),
        };
        assert_eq!(decoded, Some(expected), "read with request_id None");
    }

    #[test]
    fn a_request_id_travels_and_none_is_sent_as_before() {
        let mut with_id = registration();
        with_id.request_id = Some(u64::MAX);
        let bytes = rmp_serde::to_vec(&with_id).unwrap();
        let back: Registration = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, with_id);
        // An older peer cannot read it (rmp-serde refuses an array longer than the
        // struct): registry-svc must be upgraded before its clients.
        let old = rmp_serde::from_slice::<before_request_ids::Registration>(&bytes);
        assert!(old.is_err(), "an older peer refuses the longer array");

        let without = registration();
        let bytes = rmp_serde::to_vec(&without).unwrap();
        let old: before_request_ids::Registration =
            rmp_serde::from_slice(&bytes).expect("None is left out: an older peer reads it");
        assert_eq!(old.point, without.point);
    }

    #[test]
    fn frames_survive_the_codec() {
        let mut client = FrameCodec::<RequestFrame, ResponseFrame>::default();
        let mut server = FrameCodec::<ResponseFrame, RequestFrame>::default();
        let request = RequestFrame {
            id: u64::MAX,
            request: PutArtifact {
                point: p("repo:echo"),
                bytes: ByteBuf::from(vec![0u8, 1, 2, 255]),
            }
            .into(),
        };
        let mut buf = BytesMut::new();
        client.encode(request.clone(), &mut buf).unwrap();
        assert_eq!(server.decode(&mut buf).unwrap(), Some(request));

        for response in [
            Ok(Response::GetArtifact(ByteBuf::from(vec![9u8; 3]))),
            Ok(Response::AssignStar(())),
            Err(Error::not_found("particle x")),
        ] {
            let frame = ResponseFrame { id: 3, response };
            server.encode(frame.clone(), &mut buf).unwrap();
            assert_eq!(client.decode(&mut buf).unwrap(), Some(frame));
        }
    }
}
