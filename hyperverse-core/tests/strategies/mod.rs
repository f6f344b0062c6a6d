//! Proptest strategies over the hyperverse model, shared by the integration tests.
//!
//! Every strategy generates *valid* values. Points and selectors are generated as a
//! model (route plus segments or hops) together with the text the grammar says they are
//! written as, so tests can check the parser against an independent rendering rather
//! than only against the crate's own `Display`.

#![allow(dead_code)]

use hyperverse_core::Error;
use hyperverse_core::kind::{BaseKind, Kind, StarSub};
use hyperverse_core::particle::{
    Details, ParticleLocation, ParticleRecord, Properties, Property, PropertyMod, Status, Stub,
};
use hyperverse_core::point::{Point, PointSeg, RouteSeg};
use hyperverse_core::registry::{ArtifactMeta, Registration, StarEntry, Strategy as RegStrategy};
use hyperverse_core::security::{
    Access, AccessGrant, AccessGrantKind, ChildPerms, EnumeratedAccess, GrantId,
    IndexedAccessGrant, MaskKind, ParticlePerms, Permissions, PermissionsMask,
};
use hyperverse_core::selector::{KindSelector, SegSelector, Selector};
use hyperverse_core::wave::{
    Agent, CmdMethod, Echo, Handling, Headers, HttpMethod, HypMethod, Method, Ping, Pong, Ripple,
    Signal, StatusCode, Substance, Wave, WaveId,
};
use hyperverse_core::wire::handshake::{Handshake, PeerKind};
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use proptest::sample::select;

// ---------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------

/// A base name: lowercase letters, digits and '-', not starting or ending with '-'.
pub fn base_name() -> BoxedStrategy<String> {
    prop_oneof![
        "[a-z0-9]",
        "[a-z][a-z0-9-]{0,14}[a-z0-9]",
        "[0-9][a-z0-9-]{0,6}[a-z0-9]",
        // Names that look like grammar keywords, only lower-cased.
        select(
            &[
                "root", "local", "global", "remote", "star", "a-b", "0", "1-0"
            ][..]
        )
        .prop_map(str::to_string),
    ]
    .boxed()
}

/// A space name: dot-separated labels of base characters (`my-domain.com`), never with
/// an empty label; a label may start or end with '-' except at the very end.
pub fn space_name() -> BoxedStrategy<String> {
    prop_oneof![
        4 => base_name(),
        4 => vec("[a-z0-9][a-z0-9-]{0,8}", 2..=4)
            .prop_map(|labels| labels.join("."))
            .prop_filter("may not end with '-'", |s| !s.ends_with('-')),
        // Labels that start with '-' after a dot, and dotted digits (`1.0.0` is a space).
        1 => "[a-z0-9]{1,4}\\.-[a-z0-9]{1,4}",
        1 => "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
    ]
    .boxed()
}

/// A file or directory name: letters (any case), digits, '.', '-', '_'; never `.`/`..`.
pub fn fs_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,16}".prop_filter("`.` and `..` are not names", |s| s != "." && s != "..")
}

/// A semver pre-release or build identifier list, as text.
fn semver_idents(numeric_leading_zero_ok: bool) -> impl Strategy<Value = String> {
    let ident = if numeric_leading_zero_ok {
        "[0-9A-Za-z-]{1,8}".boxed()
    } else {
        prop_oneof![
            "0|[1-9][0-9]{0,5}",
            "[0-9A-Za-z-]{0,4}[A-Za-z-][0-9A-Za-z-]{0,4}",
        ]
        .boxed()
    };
    vec(ident, 1..=3).prop_map(|ids| ids.join("."))
}

/// A semantic version, with pre-release and build metadata sometimes.
pub fn version() -> BoxedStrategy<semver::Version> {
    (
        prop_oneof![3 => 0u64..20, 1 => any::<u64>()],
        prop_oneof![3 => 0u64..20, 1 => any::<u64>()],
        prop_oneof![3 => 0u64..20, 1 => any::<u64>()],
        prop::option::weighted(0.4, semver_idents(false)),
        prop::option::weighted(0.2, semver_idents(true)),
    )
        .prop_map(|(major, minor, patch, pre, build)| {
            let mut v = semver::Version::new(major, minor, patch);
            if let Some(pre) = pre {
                v.pre = semver::Prerelease::new(&pre).expect("generated a valid pre-release");
            }
            if let Some(build) = build {
                v.build =
                    semver::BuildMetadata::new(&build).expect("generated valid build metadata");
            }
            v
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------
// Points
// ---------------------------------------------------------------------------------------

/// Any route.
pub fn route() -> BoxedStrategy<RouteSeg> {
    prop_oneof![
        3 => Just(RouteSeg::This),
        1 => Just(RouteSeg::Local),
        1 => Just(RouteSeg::Remote),
        1 => Just(RouteSeg::Global),
        1 => space_name().prop_map(RouteSeg::Domain),
        1 => base_name().prop_map(RouteSeg::Tag),
        1 => base_name().prop_map(RouteSeg::Star),
    ]
    .boxed()
}

/// The text of a route prefix, as the grammar writes it.
pub fn route_text(route: &RouteSeg) -> String {
    match route {
        RouteSeg::This => String::new(),
        RouteSeg::Local => "LOCAL::".into(),
        RouteSeg::Remote => "REMOTE::".into(),
        RouteSeg::Global => "GLOBAL::".into(),
        RouteSeg::Domain(d) => format!("{d}::"),
        RouteSeg::Tag(t) => format!("[{t}]::"),
        RouteSeg::Star(s) => format!("<<{s}>>::"),
    }
}

/// A segment below the space: a base or a version.
pub fn below_space_seg() -> BoxedStrategy<PointSeg> {
    prop_oneof![
        3 => base_name().prop_map(PointSeg::Base),
        1 => version().prop_map(PointSeg::Version),
    ]
    .boxed()
}

/// A file-system tail: `/`, then directories, then maybe a file.
pub fn fs_tail() -> BoxedStrategy<Vec<PointSeg>> {
    (vec(fs_name(), 0..=3), prop::option::of(fs_name()))
        .prop_map(|(dirs, file)| {
            let mut segs = vec![PointSeg::FsRoot];
            segs.extend(dirs.into_iter().map(PointSeg::Dir));
            segs.extend(file.map(PointSeg::File));
            segs
        })
        .boxed()
}

/// The segments of a valid point path: empty (ROOT), or a space, bases/versions, and
/// optionally a file-system path.
pub fn point_segments() -> BoxedStrategy<Vec<PointSeg>> {
    prop_oneof![
        1 => Just(Vec::new()),
        8 => (
            space_name(),
            vec(below_space_seg(), 0..=4),
            prop::option::weighted(0.3, fs_tail()),
        )
            .prop_map(|(space, below, fs)| {
                let mut segs = vec![PointSeg::Space(space)];
                segs.extend(below);
                segs.extend(fs.into_iter().flatten());
                segs
            }),
    ]
    .boxed()
}

/// The text the grammar writes a point as, rendered independently of `Display`.
pub fn point_text(route: &RouteSeg, segments: &[PointSeg]) -> String {
    let mut text = route_text(route);
    if segments.is_empty() {
        text.push_str("ROOT");
        return text;
    }
    for (i, seg) in segments.iter().enumerate() {
        match seg {
            PointSeg::Space(s) | PointSeg::Base(s) => {
                if i > 0 {
                    text.push(':');
                }
                text.push_str(s);
            }
            PointSeg::Version(v) => {
                text.push(':');
                text.push_str(&v.to_string());
            }
            PointSeg::FsRoot => text.push_str(":/"),
            PointSeg::Dir(d) => {
                text.push_str(d);
                text.push('/');
            }
            PointSeg::File(f) => text.push_str(f),
        }
    }
    text
}

/// A point model: route, segments and the text they are written as.
pub fn point_model() -> BoxedStrategy<(RouteSeg, Vec<PointSeg>, String)> {
    (route(), point_segments())
        .prop_map(|(route, segs)| {
            let text = point_text(&route, &segs);
            (route, segs, text)
        })
        .boxed()
}

/// Any valid point (every route kind, spaces with dots, versions, file-system paths, ROOT).
pub fn point() -> BoxedStrategy<Point> {
    (route(), point_segments())
        .prop_map(|(route, segs)| Point::from_parts(route, segs).expect("generated a valid point"))
        .boxed()
}

/// A point without a file-system path.
pub fn point_without_fs() -> BoxedStrategy<Point> {
    point()
        .prop_filter("no file-system segments", |p| {
            !p.segments()
                .iter()
                .any(|s| matches!(s, PointSeg::FsRoot) || s.is_fs())
        })
        .boxed()
}

/// A point that has a file-system path.
pub fn point_with_fs() -> BoxedStrategy<Point> {
    (
        route(),
        space_name(),
        vec(below_space_seg(), 0..=2),
        fs_tail(),
    )
        .prop_map(|(route, space, below, fs)| {
            let mut segs = vec![PointSeg::Space(space)];
            segs.extend(below);
            segs.extend(fs);
            Point::from_parts(route, segs).expect("generated a valid point")
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------
// Kinds and selectors
// ---------------------------------------------------------------------------------------

/// Any star sub-kind.
pub fn star_sub() -> impl Strategy<Value = StarSub> {
    select(StarSub::ALL)
}

/// Any base kind.
pub fn base_kind() -> impl Strategy<Value = BaseKind> {
    select(BaseKind::ALL)
}

/// Any kind, `Star<…>` with each sub-kind.
pub fn kind() -> BoxedStrategy<Kind> {
    (base_kind(), star_sub())
        .prop_map(|(base, sub)| {
            let sub = (base == BaseKind::Star).then(|| sub.as_str());
            Kind::from_parts(base, sub).expect("Star gets a sub-kind, others none")
        })
        .boxed()
}

/// A kind filter: `<Base>` for any base kind (including `<Star>`), or `<Star<Sub>>`.
pub fn kind_selector() -> BoxedStrategy<KindSelector> {
    prop_oneof![
        base_kind().prop_map(|base| KindSelector { base, exact: None }),
        star_sub().prop_map(|sub| KindSelector {
            base: BaseKind::Star,
            exact: Some(Kind::Star(sub)),
        }),
    ]
    .boxed()
}

/// What a generated hop is, before its position decides space or base.
#[derive(Debug, Clone)]
enum HopShape {
    Exact(PointSeg),
    Any,
    Recursive,
    /// `true`: written `+**` rather than `+:**`.
    Inclusive(bool),
}

fn hop_shape() -> impl Strategy<Value = HopShape> {
    prop_oneof![
        4 => below_space_seg().prop_map(HopShape::Exact),
        2 => Just(HopShape::Any),
        2 => Just(HopShape::Recursive),
        1 => any::<bool>().prop_map(HopShape::Inclusive),
    ]
}

/// One hop of a selector model: what it matches and its kind filter.
pub type HopModel = (SegSelector, Option<KindSelector>);

/// A selector model: route, hops (segment and kind filter), and the selector's text.
/// `+:**` is sometimes written `+**`, which the grammar accepts as the same.
pub fn selector_model() -> BoxedStrategy<(RouteSeg, Vec<HopModel>, String)> {
    (
        route(),
        space_name(),
        vec(
            (hop_shape(), prop::option::weighted(0.3, kind_selector())),
            0..=5,
        ),
    )
        .prop_map(|(route, first_space, shapes)| {
            let mut text = route_text(&route);
            let mut hops = Vec::new();
            if shapes.is_empty() {
                text.push_str("ROOT");
            }
            for (i, (shape, kind)) in shapes.into_iter().enumerate() {
                if i > 0 {
                    text.push(':');
                }
                let seg = match shape {
                    HopShape::Exact(seg) => {
                        // The first hop is a space; later ones bases or versions.
                        let seg = if i == 0 {
                            PointSeg::Space(first_space.clone())
                        } else {
                            seg
                        };
                        text.push_str(&seg.to_string());
                        SegSelector::Exact(seg)
                    }
                    HopShape::Any => {
                        text.push('*');
                        SegSelector::Any
                    }
                    HopShape::Recursive => {
                        text.push_str("**");
                        SegSelector::Recursive
                    }
                    HopShape::Inclusive(short) => {
                        text.push_str(if short { "+**" } else { "+:**" });
                        SegSelector::InclusiveRecursive
                    }
                };
                if let Some(kind) = &kind {
                    text.push_str(&kind.to_string());
                }
                hops.push((seg, kind));
            }
            (route, hops, text)
        })
        .boxed()
}

/// Any valid selector (parsed from generated text).
pub fn selector() -> BoxedStrategy<Selector> {
    selector_model()
        .prop_map(|(_, _, text)| {
            text.parse::<Selector>()
                .unwrap_or_else(|e| panic!("generated selector {text:?} does not parse: {e}"))
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------
// Security
// ---------------------------------------------------------------------------------------

/// Any permissions.
pub fn permissions() -> impl Strategy<Value = Permissions> {
    any::<[bool; 6]>().prop_map(|b| Permissions {
        child: ChildPerms {
            create: b[0],
            select: b[1],
            delete: b[2],
        },
        particle: ParticlePerms {
            read: b[3],
            write: b[4],
            execute: b[5],
        },
    })
}

/// A privilege name.
pub fn privilege() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z]{1,8}(:[a-z]{1,8}){0,2}", any::<String>()]
}

/// Any access.
pub fn access() -> BoxedStrategy<Access> {
    prop_oneof![
        Just(Access::Super),
        Just(Access::Owner),
        Just(Access::SuperOwner),
        (btree_set(privilege(), 0..3), permissions()).prop_map(|(privileges, permissions)| {
            Access::Enumerated(EnumeratedAccess {
                privileges,
                permissions,
            })
        }),
    ]
    .boxed()
}

/// Any grant kind.
pub fn grant_kind() -> BoxedStrategy<AccessGrantKind> {
    prop_oneof![
        Just(AccessGrantKind::Super),
        privilege().prop_map(AccessGrantKind::Privilege),
        (
            prop_oneof![Just(MaskKind::Or), Just(MaskKind::And)],
            permissions()
        )
            .prop_map(|(kind, permissions)| AccessGrantKind::PermissionsMask(
                PermissionsMask { kind, permissions }
            )),
    ]
    .boxed()
}

/// Any grant.
pub fn access_grant() -> BoxedStrategy<AccessGrant> {
    (grant_kind(), selector(), selector(), point())
        .prop_map(|(kind, on_point, to_point, by_particle)| AccessGrant {
            kind,
            on_point,
            to_point,
            by_particle,
        })
        .boxed()
}

/// Any grant id.
pub fn grant_id() -> BoxedStrategy<GrantId> {
    (point(), any::<u64>())
        .prop_map(|(root, seq)| GrantId { root, seq })
        .boxed()
}

/// Any indexed grant.
pub fn indexed_grant() -> BoxedStrategy<IndexedAccessGrant> {
    (grant_id(), access_grant())
        .prop_map(|(id, grant)| IndexedAccessGrant { id, grant })
        .boxed()
}

// ---------------------------------------------------------------------------------------
// Particles
// ---------------------------------------------------------------------------------------

/// Any status.
pub fn status() -> impl Strategy<Value = Status> {
    select(Status::ALL)
}

/// Any stub.
pub fn stub() -> BoxedStrategy<Stub> {
    (point(), kind(), status())
        .prop_map(|(point, kind, status)| Stub {
            point,
            kind,
            status,
        })
        .boxed()
}

/// Any properties.
pub fn properties() -> BoxedStrategy<Properties> {
    btree_map(
        "[a-z-]{1,10}",
        (any::<String>(), any::<bool>()).prop_map(|(value, locked)| Property { value, locked }),
        0..3,
    )
    .boxed()
}

/// Any details.
pub fn details() -> BoxedStrategy<Details> {
    (stub(), properties())
        .prop_map(|(stub, properties)| Details { stub, properties })
        .boxed()
}

/// Any record.
pub fn record() -> BoxedStrategy<ParticleRecord> {
    (
        details(),
        prop::option::of(point()),
        prop::option::of(point()),
        point(),
    )
        .prop_map(|(details, star, host, owner)| ParticleRecord {
            details,
            location: ParticleLocation { star, host },
            owner,
        })
        .boxed()
}

/// Any property change.
pub fn property_mod() -> BoxedStrategy<PropertyMod> {
    prop_oneof![
        ("[a-z-]{1,10}", any::<String>(), any::<bool>())
            .prop_map(|(key, value, lock)| PropertyMod::Set { key, value, lock }),
        "[a-z-]{1,10}".prop_map(PropertyMod::Unset),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Every `hyperverse_core::Error` variant.
pub fn core_error() -> BoxedStrategy<Error> {
    let msg = any::<String>;
    prop_oneof![
        msg().prop_map(Error::BadRequest),
        (msg(), any::<u64>(), any::<u64>()).prop_map(|(what, size, limit)| Error::TooLarge {
            what,
            size,
            limit
        }),
        msg().prop_map(Error::NotFound),
        msg().prop_map(Error::AlreadyExists),
        msg().prop_map(Error::Forbidden),
        msg().prop_map(Error::Unavailable),
        msg().prop_map(Error::Timeout),
        msg().prop_map(Error::Internal),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------
// Waves
// ---------------------------------------------------------------------------------------

/// Any agent.
pub fn agent() -> BoxedStrategy<Agent> {
    prop_oneof![
        Just(Agent::Anonymous),
        Just(Agent::HyperUser),
        point().prop_map(Agent::Point),
    ]
    .boxed()
}

/// The name of an extension method: CamelCase letters and digits, at most 64.
pub fn ext_method_name() -> impl Strategy<Value = String> {
    "[A-Z][A-Za-z0-9]{0,63}"
}

/// Any method of every family.
pub fn method() -> BoxedStrategy<Method> {
    use CmdMethod as C;
    use HttpMethod as H;
    use HypMethod as Y;
    prop_oneof![
        select(vec![
            Y::Provision,
            Y::Assign,
            Y::Host,
            Y::Init,
            Y::Transport,
            Y::Search,
            Y::Migrate
        ])
        .prop_map(Method::Hyp),
        select(vec![
            C::Init,
            C::Read,
            C::Update,
            C::Command,
            C::Bounce,
            C::Knock,
            C::Greet,
            C::Log
        ])
        .prop_map(Method::Cmd),
        select(vec![
            H::Get,
            H::Post,
            H::Put,
            H::Delete,
            H::Patch,
            H::Head,
            H::Options
        ])
        .prop_map(Method::Http),
        ext_method_name().prop_map(Method::Ext),
    ]
    .boxed()
}

/// Any wave id.
pub fn wave_id() -> impl Strategy<Value = WaveId> {
    any::<(u64, u64)>().prop_map(|(origin, seq)| WaveId { origin, seq })
}

/// Any headers.
pub fn headers() -> BoxedStrategy<Headers> {
    btree_map(any::<String>(), any::<String>(), 0..3).boxed()
}

/// A status code: the named ones mostly, any `u16` sometimes.
pub fn status_code() -> BoxedStrategy<StatusCode> {
    prop_oneof![
        3 => select(vec![
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::FORBIDDEN,
            StatusCode::NOT_FOUND,
            StatusCode::TIMEOUT,
            StatusCode::CONFLICT,
            StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::MOVED,
            StatusCode::INTERNAL,
            StatusCode::UNAVAILABLE,
        ]),
        1 => any::<u16>().prop_map(StatusCode),
    ]
    .boxed()
}

/// A payload without nesting.
pub fn substance_leaf() -> BoxedStrategy<Substance> {
    prop_oneof![
        Just(Substance::Empty),
        any::<String>().prop_map(Substance::Text),
        vec(any::<u8>(), 0..64).prop_map(Substance::Bin),
        point().prop_map(Substance::Point),
        vec(point(), 0..3).prop_map(Substance::Points),
        stub().prop_map(Substance::Stub),
        vec(stub(), 0..3).prop_map(Substance::Stubs),
        details().prop_map(Substance::Details),
        record().prop_map(Substance::Record),
        access().prop_map(Substance::Access),
        vec(indexed_grant(), 0..2).prop_map(Substance::Grants),
        core_error().prop_map(Substance::Error),
    ]
    .boxed()
}

/// Any payload, including nested lists and maps.
pub fn substance() -> BoxedStrategy<Substance> {
    substance_leaf()
        .prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..3).prop_map(Substance::List),
                btree_map(any::<String>(), inner, 0..3).prop_map(Substance::Map),
            ]
        })
        .boxed()
}

/// Hops taken: small mostly, any `u16` sometimes.
fn hops() -> impl Strategy<Value = u16> {
    prop_oneof![3 => 0u16..=16, 1 => any::<u16>()]
}

/// Any handling.
pub fn handling() -> impl Strategy<Value = Handling> {
    any::<u32>().prop_map(|timeout_ms| Handling { timeout_ms })
}

prop_compose! {
    /// Any ping.
    pub fn ping()(
        id in wave_id(),
        from in point(),
        to in point(),
        agent in agent(),
        method in method(),
        headers in headers(),
        body in substance(),
        hops in hops(),
        budget in any::<u32>(),
        handling in handling(),
    ) -> Ping {
        Ping { id, from, to, agent, method, headers, body, hops, budget, handling }
    }
}

prop_compose! {
    /// Any pong.
    pub fn pong()(
        id in wave_id(),
        reply_to in wave_id(),
        from in point(),
        to in point(),
        status in status_code(),
        headers in headers(),
        body in substance(),
        hops in hops(),
    ) -> Pong {
        Pong { id, reply_to, from, to, status, headers, body, hops }
    }
}

prop_compose! {
    /// Any signal.
    pub fn signal()(
        id in wave_id(),
        from in point(),
        to in point(),
        agent in agent(),
        method in method(),
        headers in headers(),
        body in substance(),
        hops in hops(),
        budget in any::<u32>(),
    ) -> Signal {
        Signal { id, from, to, agent, method, headers, body, hops, budget }
    }
}

prop_compose! {
    /// Any ripple.
    pub fn ripple()(
        id in wave_id(),
        from in point(),
        to in vec(point(), 0..4),
        agent in agent(),
        method in method(),
        headers in headers(),
        body in substance(),
        hops in hops(),
        budget in any::<u32>(),
        handling in handling(),
    ) -> Ripple {
        Ripple { id, from, to, agent, method, headers, body, hops, budget, handling }
    }
}

prop_compose! {
    /// Any echo.
    pub fn echo()(
        id in wave_id(),
        reply_to in wave_id(),
        from in point(),
        to in point(),
        status in status_code(),
        body in substance(),
        hops in hops(),
    ) -> Echo {
        Echo { id, reply_to, from, to, status, body, hops }
    }
}

/// Any wave, all five variants.
pub fn wave() -> BoxedStrategy<Wave> {
    prop_oneof![
        ping().prop_map(Wave::Ping),
        pong().prop_map(Wave::Pong),
        signal().prop_map(Wave::Signal),
        ripple().prop_map(Wave::Ripple),
        echo().prop_map(Wave::Echo),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------
// Wire and registry
// ---------------------------------------------------------------------------------------

/// Any peer kind.
pub fn peer_kind() -> impl Strategy<Value = PeerKind> {
    select(vec![
        PeerKind::Machine,
        PeerKind::Client,
        PeerKind::RegistryClient,
    ])
}

fn some_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..48)
}

/// Every handshake message.
pub fn handshake() -> BoxedStrategy<Handshake> {
    prop_oneof![
        (
            any::<String>(),
            any::<u16>(),
            peer_kind(),
            any::<String>(),
            some_bytes()
        )
            .prop_map(|(magic, version, peer, name, nonce)| Handshake::Hello {
                magic,
                version,
                peer,
                name,
                nonce,
            }),
        (peer_kind(), any::<String>(), some_bytes())
            .prop_map(|(peer, name, nonce)| Handshake::hello(peer, name, nonce)),
        (any::<u16>(), some_bytes())
            .prop_map(|(version, nonce)| Handshake::Challenge { version, nonce }),
        some_bytes().prop_map(|mac| Handshake::Proof { mac }),
        prop::option::of(any::<String>()).prop_map(|token| Handshake::Token { token }),
        some_bytes().prop_map(|mac| Handshake::Welcome { mac }),
        any::<String>().prop_map(|reason| Handshake::Refused { reason }),
    ]
    .boxed()
}

/// Any registration strategy.
pub fn reg_strategy() -> impl Strategy<Value = RegStrategy> {
    select(vec![
        RegStrategy::Commit,
        RegStrategy::Ensure,
        RegStrategy::Override,
    ])
}

prop_compose! {
    /// Any registration.
    pub fn registration()(
        point in point(),
        kind in kind(),
        properties in vec(property_mod(), 0..4),
        owner in point(),
        strategy in reg_strategy(),
        status in status(),
        request_id in prop::option::of(any::<u64>()),
    ) -> Registration {
        Registration { point, kind, properties, owner, strategy, status, request_id }
    }
}

prop_compose! {
    /// Any star directory entry.
    pub fn star_entry()(
        star in point(),
        kind in star_sub(),
        machine in any::<String>(),
        gate in "[a-z0-9.-]{1,20}:[0-9]{1,5}",
        hosts in vec(base_kind(), 0..5),
        load in any::<u64>(),
    ) -> StarEntry {
        StarEntry { star, kind, machine, gate, hosts, load }
    }
}

/// Any artifact metadata.
pub fn artifact_meta() -> impl Strategy<Value = ArtifactMeta> {
    ("[0-9a-f]{64}", any::<u64>()).prop_map(|(hash, size)| ArtifactMeta { hash, size })
}
