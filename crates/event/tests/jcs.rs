//! RFC 8785 conformance: the reference test vectors (input → output bytes
//! and their hex), the RFC's Appendix B number samples, and properties that
//! must hold for any JSON value.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use sealtrail_event::{jcs, json, JcsError};
use serde_json::{Map, Number, Value};

fn data(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/jcs").join(dir)
}

#[test]
fn every_reference_vector_canonicalises_to_its_expected_bytes() {
    let mut names: Vec<String> = fs::read_dir(data("input"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "arrays.json",
            "french.json",
            "structures.json",
            "unicode.json",
            "values.json",
            "weird.json"
        ]
    );
    for name in names {
        let input = fs::read(data("input").join(&name)).unwrap();
        let expected = fs::read(data("output").join(&name)).unwrap();
        let stem = name.trim_end_matches(".json");
        let hex = fs::read_to_string(data("outhex").join(format!("{stem}.txt"))).unwrap();
        let from_hex: Vec<u8> = hex
            .split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        // The output files carry no trailing newline; the hex is the truth.
        assert_eq!(expected, from_hex, "{name}: output file and hex disagree");
        let actual = jcs::to_vec(&json::parse(&input).unwrap()).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&actual),
            String::from_utf8_lossy(&expected),
            "{name}"
        );
        assert_eq!(actual, from_hex, "{name}");
    }
}

/// RFC 8785 Appendix B: IEEE-754 bit patterns and their serialisation.
const APPENDIX_B: &[(u64, &str)] = &[
    (0x0000000000000000, "0"),
    (0x8000000000000000, "0"),
    (0x0000000000000001, "5e-324"),
    (0x8000000000000001, "-5e-324"),
    (0x7fefffffffffffff, "1.7976931348623157e+308"),
    (0xffefffffffffffff, "-1.7976931348623157e+308"),
    (0x4340000000000000, "9007199254740992"),
    (0xc340000000000000, "-9007199254740992"),
    (0x4430000000000000, "295147905179352830000"),
    (0x44b52d02c7e14af5, "9.999999999999997e+22"),
    (0x44b52d02c7e14af6, "1e+23"),
    (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
    (0x444b1ae4d6e2ef4e, "999999999999999700000"),
    (0x444b1ae4d6e2ef4f, "999999999999999900000"),
    (0x444b1ae4d6e2ef50, "1e+21"),
    (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
    (0x3eb0c6f7a0b5ed8d, "0.000001"),
    (0x41b3de4355555553, "333333333.3333332"),
    (0x41b3de4355555554, "333333333.33333325"),
    (0x41b3de4355555555, "333333333.3333333"),
    (0x41b3de4355555556, "333333333.3333334"),
    (0x41b3de4355555557, "333333333.33333343"),
    (0xbecbf647612f3696, "-0.0000033333333333333333"),
    (0x43143ff3c1cb0959, "1424953923781206.2"),
];

#[test]
fn appendix_b_numbers() {
    for &(bits, expected) in APPENDIX_B {
        let f = f64::from_bits(bits);
        assert_eq!(jcs::format_f64(f).unwrap(), expected, "{bits:016x}");
        let value = Value::Number(Number::from_f64(f).unwrap());
        assert_eq!(jcs::to_vec(&value).unwrap(), expected.as_bytes(), "{bits:016x}");
        // The text parses back to the same double.
        assert_eq!(expected.parse::<f64>().unwrap(), f, "{bits:016x}");
    }
    // Appendix B's NaN and Infinity rows: no JSON form, so an error.
    for bits in [0x7fffffffffffffff_u64, 0x7ff0000000000000, 0xfff0000000000000] {
        assert!(matches!(
            jcs::format_f64(f64::from_bits(bits)),
            Err(JcsError::NotFinite(_))
        ));
    }
}

#[test]
fn ecmascript_number_layout_boundaries() {
    // Fixed notation for 1e-7 < |x| < 1e21, exponent notation outside.
    for (f, expected) in [
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (123456789012345680000.0, "123456789012345680000"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (0.1, "0.1"),
        (-1.5, "-1.5"),
        (100.0, "100"),
        (4.5, "4.5"),
        (2e-3, "0.002"),
        (1e30, "1e+30"),
        (5e-324, "5e-324"),
    ] {
        assert_eq!(jcs::format_f64(f).unwrap(), expected);
    }
}

#[test]
fn the_rfc_sorting_example() {
    // RFC 8785 §3.2.3: keys given in reverse, sorted by UTF-16 code units.
    let input =
        "{\"\\u20ac\": \"Euro Sign\", \"\\r\": \"Carriage Return\", \"\\ufb33\": \"Hebrew Letter Dalet With Dagesh\", \
                 \"1\": \"One\", \"\\ud83d\\ude00\": \"Emoji: Grinning Face\", \"\\u0080\": \"Control\", \
                 \"\\u00f6\": \"Latin Small Letter O With Diaeresis\"}";
    let out = String::from_utf8(jcs::to_vec(&json::parse(input.as_bytes()).unwrap()).unwrap()).unwrap();
    let values: Vec<&str> = out
        .split("\":\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert_eq!(
        values,
        [
            "Carriage Return",
            "One",
            "Control",
            "Latin Small Letter O With Diaeresis",
            "Euro Sign",
            "Emoji: Grinning Face",
            "Hebrew Letter Dalet With Dagesh"
        ]
    );
}

/// Any JSON value serde_json can hold, with strings over all of Unicode
/// (controls included) and numbers of every kind.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        (-1000i32..1000, -30i32..30).prop_map(|(m, e)| {
            Value::Number(Number::from_f64(f64::from(m) * 10f64.powi(e)).unwrap_or_else(|| Number::from(0)))
        }),
        any::<String>().prop_map(Value::String),
        "[\\x00-\\x1f\"\\\\/\\x7f\u{80}-\u{ff}\u{e000}-\u{ffff}\u{10000}-\u{10ffff}a]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 128, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((any_key(), inner), 0..8)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Keys that stress the UTF-16 ordering: BMP above the surrogates against
/// supplementary characters, and common prefixes.
fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a\u{e9}\u{ff61}\u{fb33}\u{1f600}\u{10000}\u{0}]{0,4}",]
}

/// Values equal as RFC 8785 sees them: numbers compared as doubles.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => jcs::number_as_f64(x).unwrap() == jcs::number_as_f64(y).unwrap(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn canonicalising_is_idempotent_and_lossless(value in any_json()) {
        let once = jcs::to_vec(&value).unwrap();
        // Strict parse: the canonical form is JSON without duplicate keys.
        let back = json::parse(&once).unwrap();
        prop_assert!(same_json(&back, &value), "{} vs {}", back, value);
        let twice = jcs::to_vec(&back).unwrap();
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn formatting_of_the_input_does_not_matter(value in any_json()) {
        let pretty = serde_json::to_vec_pretty(&value).unwrap();
        let compact = serde_json::to_vec(&value).unwrap();
        let canonical = jcs::to_vec(&value).unwrap();
        prop_assert_eq!(&jcs::to_vec(&json::parse(&pretty).unwrap()).unwrap(), &canonical);
        prop_assert_eq!(&jcs::to_vec(&json::parse(&compact).unwrap()).unwrap(), &canonical);
    }

    #[test]
    fn object_members_come_out_in_utf16_order(keys in prop::collection::btree_set(any_key(), 0..12)) {
        let object: Map<String, Value> = keys.iter().map(|k| (k.clone(), Value::Null)).collect();
        let out = jcs::to_vec(&Value::Object(object)).unwrap();
        // Expected text built independently: keys sorted by collected UTF-16
        // units, each written as a lone canonical string.
        let mut sorted: Vec<&String> = keys.iter().collect();
        sorted.sort_by_key(|k| k.encode_utf16().collect::<Vec<u16>>());
        let members: Vec<String> = sorted
            .into_iter()
            .map(|k| format!("{}:null", String::from_utf8(jcs::to_vec(&Value::from(k.as_str())).unwrap()).unwrap()))
            .collect();
        prop_assert_eq!(String::from_utf8(out).unwrap(), format!("{{{}}}", members.join(",")));
    }

    #[test]
    fn doubles_round_trip_through_their_text(bits in any::<u64>()) {
        let f = f64::from_bits(bits);
        prop_assume!(f.is_finite());
        let text = jcs::format_f64(f).unwrap();
        let back: f64 = text.parse().unwrap();
        // -0 prints as 0, as ECMAScript does.
        prop_assert!(back == f && (f != 0.0 || text == "0"), "{} -> {}", f, text);
    }
}
