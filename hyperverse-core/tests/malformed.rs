//! Malformed input: random and near-valid text never panics the parsers, and whatever
//! they accept prints back to the same value; random and damaged bytes never panic the
//! frame decoder, oversized lengths are refused before anything is allocated, and
//! truncated frames are told apart from a clean end of stream.

mod strategies;

use bytes::{BufMut, BytesMut};
use hyperverse_core::kind::{BaseKind, Kind};
use hyperverse_core::point::{MAX_POINT_LEN, Point, PointParseError};
use hyperverse_core::security::{GrantId, Permissions};
use hyperverse_core::selector::Selector;
use hyperverse_core::wave::{Agent, Method, Ping, Substance, Wave, WaveId};
use hyperverse_core::wire::{DEFAULT_MAX_FRAME, FrameCodec, LENGTH_PREFIX, WireError};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use strategies::*;
use tokio_util::codec::{Decoder, Encoder};

type WaveCodec = FrameCodec<Wave, Wave>;

// ---------------------------------------------------------------------------------------
// Text generators
// ---------------------------------------------------------------------------------------

/// Pieces of the grammars (points, selectors, kinds, methods, permissions, grant ids).
const TOKENS: &[&str] = &[
    "::",
    ":",
    "/",
    ".",
    "..",
    "-",
    "_",
    "<",
    ">",
    "<<",
    ">>",
    "*",
    "**",
    "+",
    "+:**",
    "[",
    "]",
    "#",
    "ROOT",
    "LOCAL",
    "GLOBAL",
    "REMOTE",
    "a",
    "b",
    "z9",
    "x-y",
    "0",
    "1",
    "42",
    "1.0.0",
    "-rc.1",
    "+build",
    "Star",
    "Central",
    "Space",
    "Mechtron",
    "Hyp",
    "Cmd",
    "Http",
    "Ext",
    "Read",
    "Get",
    "Assign",
    "csd",
    "rwx",
    "CSD",
    "RWX",
    "é",
    " ",
    "\u{0}",
    "\u{1F600}",
];

/// Strings made of the grammars' own characters and keywords.
fn grammar_soup() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9:/.<>*+\\[\\]#_-]{0,40}",
        vec(select(TOKENS), 0..16).prop_map(|t| t.concat()),
    ]
}

/// A few random edits (insert a token, delete a span, replace a character) of `text`.
fn mutate(text: String) -> impl Strategy<Value = String> {
    vec(
        (0u8..3, any::<Index>(), any::<Index>(), select(TOKENS)),
        1..4,
    )
    .prop_map(move |edits| {
        let mut chars: Vec<char> = text.chars().collect();
        for (op, at, span, token) in edits {
            let at = at.index(chars.len() + 1);
            match op {
                0 => {
                    chars.splice(at..at, token.chars());
                }
                1 => {
                    let end = (at + 1 + span.index(4)).min(chars.len());
                    chars.drain(at.min(end)..end);
                }
                _ => {
                    if at < chars.len() {
                        chars[at] = token.chars().next().unwrap_or('x');
                    }
                }
            }
        }
        chars.into_iter().collect()
    })
}

/// Text worth throwing at the parsers: unicode, grammar soup, and damaged valid text.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => any::<String>(),
        2 => grammar_soup(),
        3 => point().prop_flat_map(|p| mutate(p.to_string())),
        3 => selector().prop_flat_map(|s| mutate(s.to_string())),
        1 => grant_id().prop_flat_map(|g| mutate(g.to_string())),
        1 => kind().prop_flat_map(|k| mutate(k.to_string())),
        1 => method().prop_flat_map(|m| mutate(m.to_string())),
        1 => permissions().prop_flat_map(|p| mutate(p.to_string())),
    ]
}

fn check_point_error(input: &str, err: &PointParseError) {
    assert_eq!(err.input, input);
    assert!(
        err.column >= 1 && err.column <= input.len() + 1,
        "{input:?}: column {} outside the input: {err}",
        err.column
    );
    assert!(!err.reason.is_empty());
}

// ---------------------------------------------------------------------------------------
// Text parsers
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A point's text is canonical: what parses prints back exactly.
    #[test]
    fn points_from_hostile_text(input in hostile_text()) {
        match input.parse::<Point>() {
            Ok(point) => {
                prop_assert_eq!(point.to_string(), input.as_str());
                prop_assert_eq!(point.to_string().parse::<Point>().unwrap(), point);
            }
            Err(err) => check_point_error(&input, &err),
        }
    }

    #[test]
    fn selectors_from_hostile_text(input in hostile_text()) {
        match input.parse::<Selector>() {
            Ok(sel) => {
                let printed = sel.to_string();
                let again: Selector = printed
                    .parse()
                    .unwrap_or_else(|e| panic!("{input:?} parsed but prints as {printed:?}: {e}"));
                prop_assert_eq!(&again, &sel);
                prop_assert_eq!(again.to_string(), printed);
                // Structural queries on anything that parsed do not panic either.
                let _ = sel.max_depth();
                let _ = sel.root_point();
            }
            Err(err) => check_point_error(&input, &err),
        }
    }

    #[test]
    fn grant_ids_from_hostile_text(input in hostile_text(), seq in prop::option::of("#[0-9+]{0,4}")) {
        let input = input + seq.as_deref().unwrap_or("");
        if let Ok(id) = input.parse::<GrantId>() {
            prop_assert_eq!(id.to_string().parse::<GrantId>().unwrap(), id);
        }
    }

    /// Kinds, base kinds, permissions and methods have one spelling each (bare
    /// extension names aside): what parses prints back exactly.
    #[test]
    fn small_grammars_from_hostile_text(input in hostile_text()) {
        if let Ok(kind) = input.parse::<Kind>() {
            prop_assert_eq!(kind.to_string(), input.as_str());
        }
        if let Ok(base) = input.parse::<BaseKind>() {
            prop_assert_eq!(base.to_string(), input.as_str());
        }
        if let Ok(perms) = input.parse::<Permissions>() {
            prop_assert_eq!(perms.to_string(), input.as_str());
        }
        if let Ok(perms) = Permissions::parse_lenient(&input) {
            prop_assert_eq!(perms.to_string().parse::<Permissions>().unwrap(), perms);
        }
        if let Ok(method) = input.parse::<Method>() {
            let printed = method.to_string();
            prop_assert!(printed == input || printed == format!("Ext<{input}>"), "{} -> {}", input, printed);
            prop_assert_eq!(printed.parse::<Method>().unwrap(), method);
        }
    }

    /// `push` refuses or returns a point that prints and parses back to itself.
    #[test]
    fn push_hostile_segments(base in point(), segment in hostile_text()) {
        if let Ok(child) = base.push(&segment) {
            prop_assert!(base.is_parent_of(&child));
            prop_assert_eq!(child.to_string().parse::<Point>().unwrap(), child);
        }
    }
}

/// Bad points not covered by the unit tests in `src/point.rs`, with the column (1-based,
/// in bytes) the error must point at and a word the message must contain.
#[test]
fn bad_points_say_where() {
    let long = format!("a{}", ":b".repeat(MAX_POINT_LEN / 2));
    let cases: &[(&str, usize, &str)] = &[
        ("GLOBAL::app:Db", 13, "lowercase"),
        ("LOCAL::", 8, "no segments"),
        ("[Edge]::app", 2, "route tag"),
        ("[]::app", 2, "empty route tag"),
        ("[edge-]::app", 6, "end with '-'"),
        ("<<>>::app", 3, "empty star route"),
        ("<<cen tral>>::app", 6, "' '"),
        ("a.b.::app", 1, "route must be"),
        ("app.:x", 1, "empty domain label"),
        (".app", 1, "must start"),
        ("localhost:-app", 11, "must start"),
        ("localhost:app:1.2", 15, "bad version"),
        ("localhost:app:1.0.0-01", 15, "bad version"),
        ("localhost:ab\u{e9}", 13, "may not contain"),
        ("repo:v:1.0.0:/wasm/he llo.wasm", 22, "may not contain"),
        ("repo:/a/./b", 9, "not allowed"),
        ("repo:app:1.0.0:/dir//", 21, "empty file"),
        ("localhost:app:/wasm/x:y", 22, "last segment"),
        ("GLOBAL::/x", 9, "needs a segment"),
        (&long, MAX_POINT_LEN + 1, "longer than"),
    ];
    for &(input, column, needle) in cases {
        let err = input.parse::<Point>().unwrap_err();
        assert_eq!(err.column, column, "{input:?}: {err}");
        assert!(err.to_string().contains(needle), "{input:?}: {err}");
        assert_eq!(err.input, input);
    }
}

/// Bad selectors not covered by the unit tests in `src/selector.rs`.
#[test]
fn bad_selectors_say_where() {
    let cases: &[(&str, usize, &str)] = &[
        ("localhost:+:+:**", 13, "twice"),
        ("localhost:+*", 11, "only precede"),
        ("localhost:*<Star<Moon>>", 12, "Moon"),
        ("localhost:*<Base<Central>>", 12, "no sub-kinds"),
        ("localhost:*<Star>x", 12, "<Kind>"),
        ("localhost:<Space>", 11, "empty segment"),
        ("GLOBAL::", 9, "no hops"),
        ("localhost:app:/x:y", 15, "last hop"),
    ];
    for &(input, column, needle) in cases {
        let err = input.parse::<Selector>().unwrap_err();
        assert_eq!(err.column, column, "{input:?}: {err}");
        assert!(err.to_string().contains(needle), "{input:?}: {err}");
    }
}

// ---------------------------------------------------------------------------------------
// Regressions: bugs found by these tests, fixed in src.
// ---------------------------------------------------------------------------------------

/// `Selector::exact` of a point with a file-system path prints every segment joined by
/// `:` (`repo:/:wasm/:hello.wasm`), which the selector grammar refuses, so such a
/// selector does not survive its own serialization.
#[test]
fn exact_selector_of_a_file_system_point_round_trips() {
    let point: Point = "repo:hello:1.0.0:/wasm/hello.wasm".parse().unwrap();
    let sel = Selector::exact(&point);
    let text = sel.to_string();
    let parsed: Result<Selector, _> = text.parse();
    assert_eq!(parsed.as_ref().ok(), Some(&sel), "{text:?}: {parsed:?}");
    let bytes = rmp_serde::to_vec(&sel).unwrap();
    assert_eq!(rmp_serde::from_slice::<Selector>(&bytes).ok(), Some(sel));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn exact_selector_of_any_file_system_point_round_trips(point in point_with_fs()) {
        let sel = Selector::exact(&point);
        prop_assert!(sel.matches(&point, &[]));
        let text = sel.to_string();
        let parsed = text.parse::<Selector>();
        prop_assert_eq!(parsed.as_ref().ok(), Some(&sel), "{:?}: {:?}", text, parsed);
    }
}

/// `Point::push` does not check `MAX_POINT_LEN`, so it builds points whose text the
/// parser refuses: they cannot be deserialized (a frame carrying one fails to decode).
#[test]
fn push_respects_the_length_limit() {
    let mut point: Point = "localhost".parse().unwrap();
    while point.to_string().len() <= MAX_POINT_LEN {
        match point.push("abcdefghij") {
            Ok(child) => point = child,
            Err(_) => return, // refused at the limit: fine
        }
    }
    let text = point.to_string();
    assert!(
        text.parse::<Point>().is_ok(),
        "push built a {}-byte point that does not parse",
        text.len()
    );
}

/// The MessagePack decoder allows 1024 levels of nesting, but every level of
/// `Substance::List` costs several KiB of stack in a debug build: a ~3.5 KB frame
/// nesting 500 lists overflowed a 2 MiB thread stack (the default for tests, std threads
/// and tokio workers) and aborted the whole process. The codec now refuses it, by its
/// depth, on a 2 MiB stack.
#[test]
fn deeply_nested_substance_does_not_overflow_the_stack() {
    let frame = nested_list_frame(1000);
    assert!(
        frame.len() < 8 * 1024,
        "a small frame: {} bytes",
        frame.len()
    );
    let outcome = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let mut src = BytesMut::from(&frame[..]);
            WaveCodec::default().decode(&mut src).map(|w| w.is_some())
        })
        .unwrap()
        .join()
        .expect("the decoding thread did not panic");
    assert!(
        matches!(&outcome, Err(WireError::Decode(why)) if why == "nested deeper than 64 levels"),
        "refused for its depth: {outcome:?}"
    );
}

/// The most `Substance::List`s a `Ping`'s body may nest. A frame body nests at most
/// `MAX_NESTING` (64) MessagePack arrays or maps on a path; enum tags are maps
/// rmp-serde reads without counting, and the `Ping` struct is one array, which leaves
/// 63 for the body. Written out, so that a change of the limit fails a test.
const DEEPEST_BODY_LISTS: usize = 63;

#[test]
fn a_body_nested_to_the_limit_decodes_and_one_level_more_is_refused() {
    let mut src = BytesMut::from(&nested_list_frame(DEEPEST_BODY_LISTS)[..]);
    let Some(Wave::Ping(ping)) = WaveCodec::default().decode(&mut src).unwrap() else {
        panic!("a ping");
    };
    assert_eq!(ping.body, nested_lists(DEEPEST_BODY_LISTS));
    assert!(src.is_empty());

    let mut src = BytesMut::from(&nested_list_frame(DEEPEST_BODY_LISTS + 1)[..]);
    let err = WaveCodec::default().decode(&mut src).unwrap_err();
    assert!(
        matches!(&err, WireError::Decode(why) if why == "nested deeper than 64 levels"),
        "{err}"
    );
    assert!(src.is_empty(), "the refused frame is consumed whole");
}

/// `depth` nested `Substance::List`s around `Empty`.
fn nested_lists(depth: usize) -> Substance {
    (0..depth).fold(Substance::Empty, |inner, _| Substance::List(vec![inner]))
}

/// A `Ping` frame whose body is `depth` nested `Substance::List`s around `Empty`.
fn nested_list_frame(depth: usize) -> Vec<u8> {
    let marker = Substance::Text("NESTING-GOES-HERE".into());
    let mut ping = Ping::new(
        WaveId { origin: 1, seq: 1 },
        "a".parse().unwrap(),
        "b".parse().unwrap(),
        Agent::Anonymous,
        Method::Ext("Nest".into()),
    );
    ping.body = marker.clone();
    let body = rmp_serde::to_vec(&Wave::Ping(ping)).unwrap();
    let marker = rmp_serde::to_vec(&marker).unwrap();
    let at = body
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the marker is in the body");
    let empty = rmp_serde::to_vec(&Substance::Empty).unwrap();
    let one = rmp_serde::to_vec(&Substance::List(vec![Substance::Empty])).unwrap();
    let open = &one[..one.len() - empty.len()];
    let mut nested = body[..at].to_vec();
    for _ in 0..depth {
        nested.extend_from_slice(open);
    }
    nested.extend_from_slice(&empty);
    nested.extend_from_slice(&body[at + marker.len()..]);
    let mut frame = u32::try_from(nested.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(&nested);
    frame
}

/// The nesting frame is well-formed: at a shallow depth it decodes to the nested value.
#[test]
fn nested_list_frame_is_well_formed() {
    let mut src = BytesMut::from(&nested_list_frame(3)[..]);
    let Some(Wave::Ping(ping)) = WaveCodec::default().decode(&mut src).unwrap() else {
        panic!("a ping");
    };
    let list = |inner| Substance::List(vec![inner]);
    assert_eq!(ping.body, list(list(list(Substance::Empty))));
    assert_eq!(nested_lists(3), ping.body);
    assert!(src.is_empty());
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

fn encode_wave(wave: &Wave) -> BytesMut {
    let mut buf = BytesMut::new();
    WaveCodec::default()
        .encode(wave.clone(), &mut buf)
        .expect("encodes");
    buf
}

/// Decodes from `src` until the codec wants more bytes or fails, checking what each
/// outcome does to the buffer; then ends the stream. Must not panic.
fn drain(codec: &mut WaveCodec, src: &mut BytesMut) {
    for _ in 0..64 {
        let before = src.clone();
        match codec.decode(src) {
            Ok(Some(_)) => assert!(src.len() < before.len(), "a decoded frame is consumed"),
            Ok(None) => {
                assert_eq!(src, &before, "waiting for more leaves the bytes alone");
                break;
            }
            Err(WireError::Decode(_)) => {
                // The bad frame is consumed whole: prefix and announced body.
                let len = u32::from_be_bytes(before[..LENGTH_PREFIX].try_into().unwrap());
                assert_eq!(src.len(), before.len() - LENGTH_PREFIX - len as usize);
            }
            Err(WireError::FrameTooLarge { len, max }) => {
                assert!(len > max);
                assert_eq!(src, &before, "a refused length consumes nothing");
                return;
            }
            Err(other) => panic!("decode never reports {other:?}"),
        }
    }
    match codec.decode_eof(src) {
        Ok(_) | Err(WireError::Decode(_) | WireError::FrameTooLarge { .. }) => {}
        Err(WireError::Truncated { have, need }) => {
            assert_eq!(have, src.len());
            assert!(need > have);
        }
        Err(other) => panic!("decode_eof never reports {other:?}"),
    }
}

/// Byte streams worth throwing at the decoder.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Anything.
        vec(any::<u8>(), 0..256),
        // A plausible length, then anything (reaches the MessagePack parser).
        vec(any::<u8>(), 0..256).prop_map(|body| {
            let mut frame = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
            frame.extend(body);
            frame
        }),
        // A valid wave frame with some body bytes overwritten.
        (wave(), vec((any::<Index>(), any::<u8>()), 1..6)).prop_map(|(wave, flips)| {
            let mut frame = encode_wave(&wave).to_vec();
            let body_len = frame.len() - LENGTH_PREFIX;
            for (at, byte) in flips {
                frame[LENGTH_PREFIX + at.index(body_len)] = byte;
            }
            frame
        }),
        // A valid wave frame with the body cut short, the length fixed to match.
        (wave(), any::<Index>()).prop_map(|(wave, cut)| {
            let frame = encode_wave(&wave);
            let body = &frame[LENGTH_PREFIX..];
            let body = &body[..cut.index(body.len())];
            let mut out = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
            out.extend_from_slice(body);
            out
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn hostile_bytes_never_panic_the_decoder(bytes in hostile_bytes(), more in hostile_bytes()) {
        let mut codec = WaveCodec::default();
        let mut src = BytesMut::from(&bytes[..]);
        drain(&mut codec, &mut src);
        // Garbage followed by more garbage, through a fresh buffer.
        let mut src = BytesMut::from(&bytes[..]);
        src.extend_from_slice(&more);
        drain(&mut codec, &mut src);
        // decode_eof straight away, too.
        let mut src = BytesMut::from(&bytes[..]);
        let _ = codec.decode_eof(&mut src);
    }

    /// A length over the limit is refused at once, whatever follows it, without
    /// reserving room for it or consuming anything.
    #[test]
    fn oversized_length_is_refused_without_allocating(
        max in prop_oneof![0usize..64, 0usize..=DEFAULT_MAX_FRAME],
        over in any::<Index>(),
        tail in vec(any::<u8>(), 0..32),
        at_eof in any::<bool>(),
    ) {
        let room = u32::MAX as usize - max;
        let announced = max + 1 + over.index(room);
        let mut src = BytesMut::with_capacity(LENGTH_PREFIX + tail.len());
        src.put_u32(u32::try_from(announced).unwrap());
        src.put_slice(&tail);
        let before = src.clone();
        let capacity = src.capacity();
        let mut codec = WaveCodec::with_max_frame(max);
        let result = if at_eof { codec.decode_eof(&mut src) } else { codec.decode(&mut src) };
        match result {
            Err(WireError::FrameTooLarge { len, max: m }) => {
                prop_assert_eq!(len, announced);
                prop_assert_eq!(m, max);
            }
            other => prop_assert!(false, "expected FrameTooLarge, got {:?}", other),
        }
        prop_assert_eq!(src.capacity(), capacity, "no room reserved for the frame");
        prop_assert_eq!(&src, &before, "nothing consumed");
    }

    /// A valid frame cut anywhere: `decode` waits for more, leaving the bytes alone;
    /// `decode_eof` reports the truncation with the right counts (or a clean end at 0).
    /// The rest of the frame then completes it.
    #[test]
    fn truncated_frames_wait_then_fail_at_eof(wave in wave()) {
        let frame = encode_wave(&wave);
        let total = frame.len();
        for cut in 0..total {
            let mut src = BytesMut::from(&frame[..cut]);
            let mut codec = WaveCodec::default();
            prop_assert!(codec.decode(&mut src).unwrap().is_none(), "cut at {}", cut);
            prop_assert_eq!(&src[..], &frame[..cut]);

            let mut at_eof = BytesMut::from(&frame[..cut]);
            match codec.decode_eof(&mut at_eof) {
                Ok(None) if cut == 0 => {}
                Err(WireError::Truncated { have, need }) if cut > 0 => {
                    prop_assert_eq!(have, cut);
                    prop_assert_eq!(need, if cut < LENGTH_PREFIX { LENGTH_PREFIX } else { total });
                }
                other => prop_assert!(false, "cut at {} of {}: {:?}", cut, total, other),
            }

            src.extend_from_slice(&frame[cut..]);
            prop_assert_eq!(codec.decode(&mut src).unwrap(), Some(wave.clone()));
            prop_assert!(src.is_empty());
        }
    }
}

/// Deterministic edge cases of the prefix.
#[test]
fn prefix_edge_cases() {
    let mut codec = WaveCodec::default();
    // A zero-length body is a (bad) frame, not a wait.
    let mut src = BytesMut::from(&[0u8, 0, 0, 0][..]);
    assert!(matches!(codec.decode(&mut src), Err(WireError::Decode(_))));
    assert!(src.is_empty());
    // Exactly the limit is allowed to wait; one more is refused.
    let mut src = BytesMut::new();
    src.put_u32(u32::try_from(DEFAULT_MAX_FRAME).unwrap());
    assert!(codec.decode(&mut src).unwrap().is_none());
    let mut src = BytesMut::new();
    src.put_u32(u32::try_from(DEFAULT_MAX_FRAME + 1).unwrap());
    assert!(matches!(
        codec.decode(&mut src),
        Err(WireError::FrameTooLarge { len, max: DEFAULT_MAX_FRAME }) if len == DEFAULT_MAX_FRAME + 1
    ));
    // A value of the wrong type is a decode error, not a panic.
    let mut src = BytesMut::new();
    FrameCodec::<String, String>::default()
        .encode("not a wave".to_string(), &mut src)
        .unwrap();
    assert!(matches!(codec.decode(&mut src), Err(WireError::Decode(_))));
}
