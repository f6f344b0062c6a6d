//! Property tests: every textual form prints back to what it parsed, and every wire
//! message survives `FrameCodec` (whole, split anywhere, several frames back to back)
//! and plain `rmp_serde`.

mod strategies;

use std::fmt::Debug;

use bytes::BytesMut;
use hyperverse_core::kind::{BaseKind, Kind};
use hyperverse_core::point::{Point, PointSeg};
use hyperverse_core::security::Permissions;
use hyperverse_core::selector::{SegSelector, Selector};
use hyperverse_core::wave::Method;
use hyperverse_core::wire::{FrameCodec, LENGTH_PREFIX, WireError};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use serde::Serialize;
use serde::de::DeserializeOwned;
use strategies::*;
use tokio_util::codec::{Decoder, Encoder};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `value` printed and parsed back, and printed again: both must be the same.
fn assert_text_round_trip<T>(value: &T)
where
    T: std::fmt::Display + std::str::FromStr + PartialEq + Debug,
    T::Err: std::fmt::Display,
{
    let text = value.to_string();
    let parsed: T = text
        .parse()
        .unwrap_or_else(|e| panic!("{value:?} printed as {text:?}, which does not parse: {e}"));
    assert_eq!(&parsed, value, "{text:?}");
    assert_eq!(parsed.to_string(), text);
}

/// Encodes `items` one after the other into one buffer.
fn encode_all<T: Serialize + Clone>(items: &[T]) -> BytesMut {
    let mut codec = FrameCodec::<T, T>::default();
    let mut buf = BytesMut::new();
    for item in items {
        let before = buf.len();
        codec.encode(item.clone(), &mut buf).expect("encodes");
        let frame = &buf[before..];
        let prefix = u32::from_be_bytes(frame[..LENGTH_PREFIX].try_into().unwrap()) as usize;
        assert_eq!(
            prefix,
            frame.len() - LENGTH_PREFIX,
            "the prefix is the body length"
        );
    }
    buf
}

/// Feeds `bytes` to a decoder in pieces cut at `cuts`, decoding all it can after each
/// piece; then ends the stream. Returns every value decoded.
fn decode_in_pieces<T: DeserializeOwned>(bytes: &[u8], cuts: &[Index]) -> Vec<T> {
    let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    cuts.push(bytes.len());
    cuts.sort_unstable();
    let mut codec = FrameCodec::<T, T>::default();
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    for cut in cuts {
        src.extend_from_slice(&bytes[fed..cut]);
        fed = cut;
        while let Some(item) = codec.decode(&mut src).expect("valid frames decode") {
            out.push(item);
        }
    }
    assert!(src.is_empty(), "every byte consumed, {} left", src.len());
    assert!(
        codec.decode_eof(&mut src).expect("clean end").is_none(),
        "nothing after the last frame"
    );
    out
}

/// `items` through the codec: alone, then all together fed in arbitrary pieces.
fn assert_frames_round_trip<T>(items: &[T], cuts: &[Index])
where
    T: Serialize + DeserializeOwned + Clone + PartialEq + Debug,
{
    // Each alone, decoded from exactly its frame.
    for item in items {
        let mut buf = encode_all(std::slice::from_ref(item));
        let mut codec = FrameCodec::<T, T>::default();
        let got = codec
            .decode(&mut buf)
            .expect("decodes")
            .expect("a whole frame");
        assert_eq!(&got, item);
        assert!(buf.is_empty(), "the frame was consumed exactly");
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }
    // All together, split anywhere.
    let bytes = encode_all(items).freeze();
    let got: Vec<T> = decode_in_pieces(&bytes, cuts);
    assert_eq!(got, items);
}

/// `value` through plain `rmp_serde`, compact and with field names.
fn assert_rmp_round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let compact = rmp_serde::to_vec(value).expect("encodes");
    assert_eq!(
        &rmp_serde::from_slice::<T>(&compact).expect("decodes"),
        value
    );
    let named = rmp_serde::to_vec_named(value).expect("encodes named");
    assert_eq!(
        &rmp_serde::from_slice::<T>(&named).expect("decodes named"),
        value
    );
}

fn cuts() -> impl Strategy<Value = Vec<Index>> {
    vec(any::<Index>(), 0..6)
}

// ---------------------------------------------------------------------------------------
// Text forms
// ---------------------------------------------------------------------------------------

proptest! {
    /// The text the grammar prescribes for a point parses to exactly that point, and
    /// the point prints as that same text.
    #[test]
    fn point_grammar_text_parses_to_its_model((route, segments, text) in point_model()) {
        let point: Point = text
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
        prop_assert_eq!(point.route(), &route);
        prop_assert_eq!(point.segments(), &segments[..]);
        prop_assert_eq!(point.to_string(), text);
    }

    #[test]
    fn point_display_parse_round_trip(point in point()) {
        assert_text_round_trip(&point);
        let via_try: Point = Point::try_from(point.to_string().as_str()).unwrap();
        prop_assert_eq!(via_try, point);
    }

    /// Whatever parses, prints to a fixpoint: parse(print(parse(s))) == parse(s).
    #[test]
    fn point_parse_display_parse_is_a_fixpoint((_, _, text) in point_model()) {
        let first: Point = text.parse().unwrap();
        let printed = first.to_string();
        let second: Point = printed.parse().unwrap();
        prop_assert_eq!(&second, &first);
        prop_assert_eq!(second.to_string(), printed);
    }

    /// Every ancestor of a valid point is a valid point that prints and parses back, and
    /// pushing a point's segments one by one from its route's root rebuilds it.
    #[test]
    fn ancestors_print_back_and_push_rebuilds(point in point()) {
        let ancestors: Vec<Point> = point.ancestors().collect();
        prop_assert_eq!(ancestors.len(), point.depth() + 1);
        for (i, ancestor) in ancestors.iter().enumerate() {
            assert_text_round_trip(ancestor);
            prop_assert_eq!(ancestor.depth(), point.depth() - i);
            if i > 0 {
                prop_assert!(ancestor.is_ancestor_of(&point));
            }
        }
        let mut built = point.prefix(0);
        prop_assert!(built.is_root());
        for seg in point.segments() {
            let next = built.push(&seg.to_string()).unwrap_or_else(|e| {
                panic!("push {seg:?} ({:?}) onto {built}: {e}", seg.to_string())
            });
            prop_assert!(built.is_parent_of(&next));
            prop_assert_eq!(next.parent(), Some(built.clone()));
            built = next;
        }
        prop_assert_eq!(built, point);
    }

    #[test]
    fn point_rmp_round_trip(point in point()) {
        assert_rmp_round_trip(&point);
        // A point travels as its text.
        let bytes = rmp_serde::to_vec(&point).unwrap();
        prop_assert_eq!(rmp_serde::from_slice::<String>(&bytes).unwrap(), point.to_string());
    }

    /// A selector's text parses to the hops it was made of; it prints back the same
    /// (with `+**` normalised to `+:**`), and parses back to itself.
    #[test]
    fn selector_text_parses_to_its_model((route, hops, text) in selector_model()) {
        let sel: Selector = text
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"));
        prop_assert_eq!(sel.route(), &route);
        let got: Vec<_> = sel.hops().iter().map(|h| (h.segment.clone(), h.kind.clone())).collect();
        prop_assert_eq!(&got, &hops);
        let normalised = text.replace("+**", "+:**");
        prop_assert_eq!(sel.to_string(), normalised);
        assert_text_round_trip(&sel);
    }

    #[test]
    fn selector_max_depth_and_root_point_follow_the_hops(sel in selector()) {
        let unbounded = sel.hops().iter().any(|h| {
            matches!(h.segment, SegSelector::Recursive | SegSelector::InclusiveRecursive)
        });
        match sel.max_depth() {
            None => prop_assert!(unbounded),
            Some(depth) => {
                prop_assert!(!unbounded);
                prop_assert_eq!(depth, sel.hops().len());
            }
        }
        let root = sel.root_point();
        prop_assert_eq!(root.route(), sel.route());
        let leading = sel
            .hops()
            .iter()
            .take_while(|h| matches!(h.segment, SegSelector::Exact(_)))
            .count();
        prop_assert_eq!(root.depth(), leading);
        assert_text_round_trip(&root);
    }

    #[test]
    fn selector_rmp_round_trip(sel in selector()) {
        assert_rmp_round_trip(&sel);
    }

    /// `Selector::exact` of a point without a file system prints as the point itself and
    /// parses back; it matches the point and neither its parent nor a child.
    #[test]
    fn exact_selector_of_a_point_round_trips(point in point_without_fs()) {
        let sel = Selector::exact(&point);
        prop_assert_eq!(sel.to_string(), point.to_string());
        assert_text_round_trip(&sel);
        prop_assert!(sel.matches(&point, &[]));
        if let Some(parent) = point.parent() {
            prop_assert!(!sel.matches(&parent, &[]));
        }
        let child = point.push("zz-child").unwrap();
        prop_assert!(!sel.matches(&child, &[]));
    }

    #[test]
    fn permissions_round_trip(perms in permissions()) {
        assert_text_round_trip(&perms);
        prop_assert_eq!(Permissions::parse_lenient(&perms.to_string()).unwrap(), perms);
        assert_rmp_round_trip(&perms);
    }

    /// `or`/`and`/`contains` agree with each other on every pair.
    #[test]
    fn permissions_algebra(a in permissions(), b in permissions()) {
        let or = a.or(&b);
        let and = a.and(&b);
        prop_assert!(or.contains(&a) && or.contains(&b));
        prop_assert!(a.contains(&and) && b.contains(&and));
        prop_assert_eq!(a.contains(&b), a.or(&b) == a);
        prop_assert_eq!(a.contains(&b), a.and(&b) == b);
        prop_assert_eq!(or, b.or(&a));
        prop_assert_eq!(and, b.and(&a));
    }

    #[test]
    fn kind_round_trip(kind in kind()) {
        assert_text_round_trip(&kind);
        assert_text_round_trip(&kind.base());
        prop_assert_eq!(Kind::from_parts(kind.base(), kind.sub()).unwrap(), kind);
        assert_rmp_round_trip(&kind);
        assert_rmp_round_trip(&kind.base());
    }

    #[test]
    fn grant_id_round_trip(id in grant_id()) {
        assert_text_round_trip(&id);
        assert_rmp_round_trip(&id);
    }

    #[test]
    fn method_round_trip(method in method()) {
        assert_text_round_trip(&method);
        assert_rmp_round_trip(&method);
        if let Method::Ext(name) = &method {
            // A bare CamelCase name is the same extension method.
            prop_assert_eq!(&name.parse::<Method>().unwrap(), &method);
        }
    }
}

#[test]
fn every_base_kind_prints_and_parses() {
    for base in BaseKind::ALL {
        assert_text_round_trip(base);
        let as_kind = base.as_str().parse::<Kind>();
        assert_eq!(
            as_kind.is_ok(),
            *base != BaseKind::Star,
            "{base}: {as_kind:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Wire messages
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn waves_round_trip_through_the_codec(waves in vec(wave(), 1..4), cuts in cuts()) {
        assert_frames_round_trip(&waves, &cuts);
    }

    #[test]
    fn waves_rmp_round_trip(wave in wave()) {
        assert_rmp_round_trip(&wave);
    }

    #[test]
    fn substances_round_trip(substance in substance()) {
        assert_rmp_round_trip(&substance);
        assert_frames_round_trip(std::slice::from_ref(&substance), &[]);
    }
}

proptest! {
    #[test]
    fn handshakes_round_trip_through_the_codec(msgs in vec(handshake(), 1..6), cuts in cuts()) {
        assert_frames_round_trip(&msgs, &cuts);
        for msg in &msgs {
            assert_rmp_round_trip(msg);
        }
    }

    #[test]
    fn registrations_round_trip_through_the_codec(regs in vec(registration(), 1..4), cuts in cuts()) {
        assert_frames_round_trip(&regs, &cuts);
        for reg in &regs {
            assert_rmp_round_trip(reg);
        }
    }

    #[test]
    fn star_entries_round_trip_through_the_codec(entries in vec(star_entry(), 1..4), cuts in cuts()) {
        assert_frames_round_trip(&entries, &cuts);
        for entry in &entries {
            assert_rmp_round_trip(entry);
        }
    }

    #[test]
    fn grants_round_trip_through_the_codec(grants in vec(indexed_grant(), 1..4), cuts in cuts()) {
        assert_frames_round_trip(&grants, &cuts);
        for grant in &grants {
            assert_rmp_round_trip(grant);
        }
    }

    #[test]
    fn errors_round_trip_through_the_codec(errors in vec(core_error(), 1..6), cuts in cuts()) {
        assert_frames_round_trip(&errors, &cuts);
        for error in &errors {
            assert_rmp_round_trip(error);
        }
    }

    #[test]
    fn artifact_meta_round_trips(meta in artifact_meta()) {
        assert_rmp_round_trip(&meta);
        assert_frames_round_trip(std::slice::from_ref(&meta), &[]);
    }

    /// A frame exactly at the limit passes both ways; one byte over is refused by both
    /// sides, and a refused encode leaves what was already in the buffer untouched.
    #[test]
    fn the_frame_limit_is_exact(msg in handshake(), earlier in handshake()) {
        let frame = encode_all(std::slice::from_ref(&msg));
        let len = frame.len() - LENGTH_PREFIX;

        let mut at_limit = FrameCodec::<_, _>::with_max_frame(len);
        let mut buf = BytesMut::new();
        Encoder::encode(&mut at_limit, msg.clone(), &mut buf).unwrap();
        prop_assert_eq!(&buf[..], &frame[..]);
        let got: Option<hyperverse_core::wire::handshake::Handshake> =
            Decoder::decode(&mut at_limit, &mut buf).unwrap();
        prop_assert_eq!(got.as_ref(), Some(&msg));

        if len > 0 {
            let mut under = FrameCodec::<_, hyperverse_core::wire::handshake::Handshake>::with_max_frame(len - 1);
            let mut dst = encode_all(std::slice::from_ref(&earlier));
            let before = dst.clone();
            let err = Encoder::encode(&mut under, msg.clone(), &mut dst).unwrap_err();
            prop_assert!(matches!(err, WireError::FrameTooLarge { len: l, max } if l == len && max == len - 1), "{}", err);
            prop_assert_eq!(&dst, &before, "a refused frame leaves the buffer as it was");

            let mut src = frame.clone();
            let err = Decoder::decode(&mut under, &mut src).unwrap_err();
            prop_assert!(matches!(err, WireError::FrameTooLarge { len: l, max } if l == len && max == len - 1), "{}", err);
        }
    }
}

#[test]
fn a_point_segment_prints_as_push_expects() {
    // Pinned examples of the push-rebuild property, one per segment type.
    let point: Point = "<<edge>>::repo:hello:1.0.0-rc.1+b7:/wasm/x/hello.wasm"
        .parse()
        .unwrap();
    let texts: Vec<String> = point.segments().iter().map(PointSeg::to_string).collect();
    assert_eq!(
        texts,
        [
            "repo",
            "hello",
            "1.0.0-rc.1+b7",
            "/",
            "wasm/",
            "x/",
            "hello.wasm"
        ]
    );
}
