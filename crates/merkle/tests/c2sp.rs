//! The C2SP formats end to end, against the examples in the specifications
//! (copied byte for byte under tests/data/c2sp, see its README) and the Go
//! reference implementation's signed-note vectors, plus property tests that
//! every encoder and parser pair round-trips and that parsers never panic.
#![allow(clippy::unwrap_used)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use proptest::prelude::*;
use sealtrail_merkle::hash::root_of;
use sealtrail_merkle::note::{self, MAX_SIGNATURES};
use sealtrail_merkle::tile::{locate_node, tile_levels, tiles};
use sealtrail_merkle::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/c2sp")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn b64_hash(s: &str) -> Hash {
    B64.decode(s).unwrap().try_into().unwrap()
}

// ---- signed-note ------------------------------------------------------------

#[test]
fn signed_note_spec_example_verifies() {
    let vkey_text = String::from_utf8(fixture("signed-note-example.vkey")).unwrap();
    let vkey = Verifier::parse(vkey_text.trim_end()).unwrap();
    assert_eq!(vkey.name(), "example.com/foo");
    assert_eq!(vkey.key_id(), 0x530d903a, "key ID derived from name and key");
    assert_eq!(vkey.to_string(), vkey_text.trim_end());

    let bytes = fixture("signed-note-example.note");
    let note = Note::parse(&bytes).unwrap();
    assert_eq!(note.text, "This is an example message.\n");
    assert_eq!(note.signatures.len(), 1);
    assert_eq!(
        (note.signatures[0].name.as_str(), note.signatures[0].key_id),
        ("example.com/foo", 0x530d903a)
    );
    let keys = [vkey];
    assert_eq!(note.verify(&keys).unwrap(), vec![&keys[0]]);
    assert_eq!(note.to_bytes(), bytes);

    // One flipped bit anywhere in the text or signature must break it.
    let mut tampered = note.clone();
    tampered.text = "This is an example message!\n".into();
    assert!(matches!(
        tampered.verify(&keys),
        Err(NoteError::InvalidSignature { line: 3, .. })
    ));
    let mut tampered = note;
    tampered.signatures[0].signature[63] ^= 0x80;
    assert!(matches!(
        tampered.verify(&keys),
        Err(NoteError::InvalidSignature { .. })
    ));
}

#[test]
fn signed_note_spec_poem_splits_at_the_last_blank_line() {
    let bytes = fixture("signed-note-quasimodo.note");
    let note = Note::parse(&bytes).unwrap();
    assert_eq!(
        note.text,
        "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n"
    );
    assert_eq!(note.signatures.len(), 1);
    assert_eq!(note.signatures[0].name, "quasimodo.example/salvatore");
    assert_eq!(note.signatures[0].signature.len(), 64);
    assert_eq!(note.to_bytes(), bytes);
    // The spec gives no key for this one; an unrelated key must not accept it.
    let stranger = Signer::generate("quasimodo.example/salvatore", [1; 32])
        .unwrap()
        .verifier();
    assert_eq!(note.verify(&[stranger]).unwrap_err(), NoteError::Unverified);
}

/// Vectors from golang.org/x/mod/sumdb/note (note_test.go), the reference
/// implementation the C2SP spec was written from.
mod go_sumdb {
    use super::*;

    const PETER_SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str =
        "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const PETER_SIG: &str =
        "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str =
        "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    #[test]
    fn keys() {
        let signer = Signer::from_private_key(PETER_SKEY).unwrap();
        assert_eq!((signer.name(), signer.key_id()), ("PeterNeumann", 0xc74f20a3));
        assert_eq!(signer.to_private_key(), PETER_SKEY);
        assert_eq!(signer.verifier().to_string(), PETER_VKEY);
        assert_eq!(signer.verifier(), Verifier::parse(PETER_VKEY).unwrap());
        assert_eq!(Verifier::parse(ENOCH_VKEY).unwrap().key_id(), 0xaf0cfe78);

        // Go's own mangling checks: proper substrings and +1 on any byte.
        for key in [PETER_SKEY, PETER_VKEY] {
            let b = key.as_bytes();
            for i in 0..=b.len() {
                for j in i + 1..=b.len() {
                    if (i, j) != (0, b.len()) {
                        let part = std::str::from_utf8(&b[i..j]).unwrap();
                        assert!(
                            Signer::from_private_key(part).is_err() && Verifier::parse(part).is_err(),
                            "{part}"
                        );
                    }
                }
            }
            let mut m = b.to_vec();
            for i in 0..m.len() {
                m[i] += 1;
                let s = std::str::from_utf8(&m).unwrap();
                assert!(
                    Signer::from_private_key(s).is_err() && Verifier::parse(s).is_err(),
                    "{s}"
                );
                m[i] -= 1;
            }
        }
        // Wrong key length and unknown algorithm, each with its ID adjusted.
        assert!(Verifier::parse("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==").is_err());
        let unknown_alg = "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        assert!(matches!(
            Verifier::parse(unknown_alg),
            Err(KeyError::UnsupportedType(0x65))
        ));
    }

    #[test]
    fn sign_is_byte_for_byte() {
        let signer = Signer::from_private_key(PETER_SKEY).unwrap();
        assert_eq!(note::sign(TEXT, &[&signer]).unwrap(), format!("{TEXT}\n{PETER_SIG}"));
    }

    #[test]
    fn open() {
        let peter = Verifier::parse(PETER_VKEY).unwrap();
        let enoch = Verifier::parse(ENOCH_VKEY).unwrap();
        let both = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let note = Note::parse(both.as_bytes()).unwrap();
        assert_eq!(note.text, TEXT);

        let only_peter = [peter.clone()];
        assert_eq!(note.verify(&only_peter).unwrap(), vec![&only_peter[0]]);
        let keys = [peter.clone(), enoch.clone()];
        assert_eq!(note.verify(&keys).unwrap(), vec![&keys[0], &keys[1]]);
        assert_eq!(note.verify(&[]).unwrap_err(), NoteError::Unverified);

        // Unused duplicate verifiers are harmless.
        let dup = [enoch.clone(), peter.clone(), enoch.clone()];
        assert_eq!(note.verify(&dup).unwrap().len(), 2);

        // 100 signatures are accepted, 101 are not.
        let many = format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES));
        assert_eq!(
            Note::parse(many.as_bytes()).unwrap().verify(&only_peter).unwrap().len(),
            1
        );
        let too_many = format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES + 1));
        assert!(matches!(
            Note::parse(too_many.as_bytes()),
            Err(NoteError::TooManySignatures { .. })
        ));

        // A known key's corrupted signature rejects the note...
        let at = |s: &str| s.char_indices().nth(60).unwrap().0;
        let bad_peter = format!("{}ABCD{}", &PETER_SIG[..at(PETER_SIG)], &PETER_SIG[at(PETER_SIG)..]);
        let bad = Note::parse(format!("{TEXT}\n{bad_peter}").as_bytes()).unwrap();
        let err = bad.verify(&only_peter).unwrap_err();
        assert_eq!(
            err,
            NoteError::InvalidSignature {
                line: 4,
                name: "PeterNeumann".into(),
                key_id: 0xc74f20a3
            }
        );

        // ...an unknown key's does not, and repeats count once.
        let bad_enoch = format!("{}ABCD{}", &ENOCH_SIG[..at(ENOCH_SIG)], &ENOCH_SIG[at(ENOCH_SIG)..]);
        let messy = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}{bad_enoch}");
        assert_eq!(
            Note::parse(messy.as_bytes()).unwrap().verify(&only_peter).unwrap(),
            vec![&only_peter[0]]
        );

        // Go's table of malformed notes.
        let bad_msgs: Vec<Vec<u8>> = vec![
            TEXT.into(),
            format!("{TEXT}\n").into(),
            format!("{TEXT}\n{}", PETER_SIG.trim_end()).into(),
            format!("\x01{TEXT}\n{PETER_SIG}").into(),
            [b"\xff".as_slice(), format!("{TEXT}\n{PETER_SIG}").as_bytes()].concat(),
            format!("{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=").into(),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n").into(),
        ];
        for msg in bad_msgs {
            assert!(Note::parse(&msg).is_err(), "{:?}", String::from_utf8_lossy(&msg));
        }
    }
}

// ---- tlog-checkpoint and tlog-cosignature -----------------------------------

const SOFA: &str = "example.com/behind-the-sofa";
const SOFA_ROOT: &str = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";

#[test]
fn checkpoint_spec_example_parses() {
    let bytes = fixture("tlog-checkpoint-example.note");
    let note = Note::parse(&bytes).unwrap();
    let cp = Checkpoint::parse(&note.text).unwrap();
    assert_eq!(
        cp,
        Checkpoint {
            origin: SOFA.into(),
            size: 20852163,
            root: b64_hash(SOFA_ROOT),
            extensions: vec![]
        }
    );
    assert_eq!(cp.to_text(), note.text);
    assert_eq!(note.signatures[0].name, SOFA);
    assert_eq!(note.to_bytes(), bytes);

    // No key is published for it: a key with the right name but another
    // key ID is not the log's, so nothing verifies.
    let impostor = Signer::generate(SOFA, [5; 32]).unwrap();
    assert_ne!(impostor.key_id(), note.signatures[0].key_id);
    let err = open_checkpoint(&bytes, &impostor.verifier()).unwrap_err();
    assert_eq!(err, CheckpointError::Note(NoteError::Unverified));
}

#[test]
fn cosignature_spec_example_parses_and_is_ignored() {
    let bytes = fixture("tlog-cosignature-example.note");
    let note = Note::parse(&bytes).unwrap();
    assert_eq!(
        note.text.as_bytes(),
        &fixture("tlog-checkpoint-example.note")[..note.text.len()]
    );
    let [log, witness] = note.signatures.as_slice() else {
        panic!("two signatures")
    };
    assert_eq!(log.name, SOFA);
    assert_eq!(witness.name, "witness.example.com/w1");
    // timestamped_signature: u64 time, then 64 Ed25519 bytes. The time is
    // the one in the spec's example of the signed message.
    assert_eq!(witness.signature.len(), 8 + 64);
    assert_eq!(
        u64::from_be_bytes(witness.signature[..8].try_into().unwrap()),
        1679315147
    );

    // Our own log signs the same checkpoint; the spec's witness line rides
    // along and is ignored when the log's checkpoint is opened.
    let ours = Signer::generate(SOFA, [6; 32]).unwrap();
    let cp = Checkpoint::parse(&note.text).unwrap();
    let mut signed = Note::parse(sign_checkpoint(&cp, &ours).unwrap().as_bytes()).unwrap();
    signed.signatures.push(witness.clone());
    let (opened, kept) = open_checkpoint(&signed.to_bytes(), &ours.verifier()).unwrap();
    assert_eq!(opened, cp);
    assert_eq!(kept.signatures.len(), 2);
}

// ---- tlog-proof -------------------------------------------------------------

#[test]
fn receipt_spec_example_layout() {
    let spec = fixture("tlog-proof-example.tlog-proof");

    // The spec elides its signatures ("hI2DJw[...]1roloI="), so as written
    // the checkpoint's first signature line (line 5 of the checkpoint, line
    // 14 of the receipt) is not base64.
    let err = Receipt::parse(&spec).unwrap_err();
    let want = ReceiptError::Checkpoint {
        line: 10,
        source: CheckpointError::Note(NoteError::BadBase64 { line: 5 }),
    };
    assert_eq!(err, want, "{err}");

    // With real signatures in place of the elided ones, the layout parses
    // into exactly the spec's values and writes back byte for byte.
    let text = String::from_utf8(spec).unwrap();
    let (envelope, checkpoint) = text.split_once("\n\n").unwrap();
    let checkpoint_text = &checkpoint[..checkpoint.find("\n\n").unwrap() + 1];
    let signers: Vec<Signer> = [
        "example.com/fancylog",
        "witness1.example",
        "witness2.example",
        "witness3.example",
    ]
    .iter()
    .enumerate()
    .map(|(i, name)| Signer::generate(name, [i as u8; 32]).unwrap())
    .collect();
    let signed = note::sign(checkpoint_text, &signers.iter().collect::<Vec<_>>()).unwrap();
    let bytes = format!("{envelope}\n\n{signed}").into_bytes();

    let r = Receipt::parse(&bytes).unwrap();
    assert_eq!(
        r.extra.as_deref(),
        Some(
            B64.decode("YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ")
                .unwrap()
                .as_slice()
        )
    );
    assert!(r
        .extra
        .as_deref()
        .unwrap()
        .starts_with(b"age-v1.2.1-darwin-arm64.tar.gz"));
    assert_eq!(r.index, 73894);
    let proof: Vec<Hash> = [
        "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=",
        "B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=",
        "EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=",
        "RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=",
        "AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=",
    ]
    .iter()
    .map(|s| b64_hash(s))
    .collect();
    assert_eq!(r.proof, proof);
    assert_eq!(r.checkpoint, signed.as_bytes());
    assert_eq!(r.to_bytes(), bytes);

    // The checkpoint opens with the log's key and the witnesses' lines are
    // there for a witness policy; the five illustrative hashes are far too
    // few for a tree of 109482 leaves.
    let (cp, note) = open_checkpoint(&r.checkpoint, &signers[0].verifier()).unwrap();
    assert_eq!((cp.origin.as_str(), cp.size), ("example.com/fancylog", 109482));
    let witnesses: Vec<Verifier> = signers[1..].iter().map(Signer::verifier).collect();
    assert_eq!(note.verify(&witnesses).unwrap().len(), 3);
    let err = r
        .verify(&leaf_hash(b"age-v1.2.1-darwin-arm64.tar.gz"), &signers[0].verifier())
        .unwrap_err();
    assert_eq!(err, ReceiptError::Inclusion(ProofError::TooShort));
}

// ---- tlog-tiles ---------------------------------------------------------------

#[test]
fn tile_spec_examples() {
    let c = TileCoord::new(0, 1234067, 256).unwrap();
    assert_eq!(c.path(), "tile/0/x001/x234/067");
    assert_eq!(
        TileCoord::parse_path("tile/0/x001/x234/067").unwrap(),
        (TileKind::Hashes, c)
    );

    // "a tree of size 70,000 will be represented by 273 full level 0 tiles,
    // one partial level 0 tile of width 112, one full level 1 tile, one
    // partial level 1 tile of width 17, and one partial level 2 tile of
    // width 1."
    assert_eq!(tile_levels(70_000), 3);
    let level0: Vec<TileCoord> = tiles(70_000, 0).collect();
    assert_eq!(level0.len(), 274);
    assert!(level0[..273].iter().all(|t| !t.is_partial()));
    assert_eq!(level0[273].path(), "tile/0/273.p/112");
    assert_eq!(level0[273].entries_path(), "tile/entries/273.p/112");
    let paths = |l| tiles(70_000, l).map(|t| t.path()).collect::<Vec<_>>();
    assert_eq!(paths(1), ["tile/1/000", "tile/1/001.p/17"]);
    assert_eq!(paths(2), ["tile/2/000.p/1"]);
    assert!(paths(3).is_empty());

    // "a tree of size 256 will be represented by a full level 0 tile and a
    // partial level 1 tile of width 1."
    assert_eq!(tiles(256, 0).map(|t| t.path()).collect::<Vec<_>>(), ["tile/0/000"]);
    assert_eq!(tiles(256, 1).map(|t| t.path()).collect::<Vec<_>>(), ["tile/1/000.p/1"]);
}

/// A log of 70,000 entries served as tiles, as the spec's example describes:
/// bundles hash to level-0 tiles, each level-1 hash is the root of a full
/// level-0 tile, every tree node is recoverable from its tile, and a receipt
/// for any entry verifies against the signed checkpoint.
#[test]
fn tiled_log_end_to_end() {
    const SIZE: u64 = 70_000;
    let entries: Vec<Vec<u8>> = (0..SIZE).map(|i| format!("record {i}").into_bytes()).collect();
    let mut tree = MemoryTree::new();
    entries.iter().for_each(|e| tree.push(leaf_hash(e)));

    // Serve: every tile and bundle, keyed by path.
    let mut served = std::collections::BTreeMap::new();
    for level in 0..tile_levels(SIZE) {
        for t in tiles(SIZE, level) {
            let first = t.index() * 256;
            let body: Vec<u8> = (first..first + u64::from(t.width()))
                .flat_map(|n| tree.node(level * 8, n).unwrap())
                .collect();
            served.insert(t.path(), body);
            if level == 0 {
                let bundle: Vec<&[u8]> = entries[first as usize..(first + u64::from(t.width())) as usize]
                    .iter()
                    .map(|e| &e[..])
                    .collect();
                served.insert(t.entries_path(), EntryBundle::encode(&bundle).unwrap());
            }
        }
    }
    assert_eq!(served.len(), 274 * 2 + 2 + 1);

    // Client side: parse every path, check bodies against each other.
    for (path, body) in &served {
        let (kind, t) = TileCoord::parse_path(path).unwrap();
        match kind {
            TileKind::Entries => {
                let hashes = t.hashes(&served[&t.path()]).unwrap();
                let decoded = EntryBundle::decode(body).unwrap();
                assert_eq!(decoded.len(), usize::from(t.width()));
                assert!(decoded.iter().zip(&hashes).all(|(e, h)| leaf_hash(e) == *h), "{path}");
            }
            TileKind::Hashes if t.level() > 0 => {
                for (i, h) in t.hashes(body).unwrap().iter().enumerate() {
                    let below = TileCoord::new(t.level() - 1, t.index() * 256 + i as u64, 256).unwrap();
                    let below = below.hashes(&served[&below.path()]).unwrap();
                    assert_eq!(root_of(&below), *h, "{path}[{i}]");
                }
            }
            TileKind::Hashes => {}
        }
    }

    // Every node is its tile's hash or the root of a run of them.
    for (level, n) in [
        (0, 69_999),
        (3, 100),
        (7, 272),
        (8, 272),
        (9, 135),
        (12, 16),
        (15, 1),
        (16, 0),
    ] {
        let at = locate_node(level, n).unwrap();
        let t = TileCoord::in_tree(SIZE, at.tile_level, at.tile_index).unwrap();
        assert!(t.width() >= at.min_width());
        let hashes = t.hashes(&served[&t.path()]).unwrap();
        let run = &hashes[usize::from(at.first)..usize::from(at.min_width())];
        assert_eq!(root_of(run), tree.node(level, n).unwrap(), "node ({level}, {n})");
    }

    // Receipts.
    let log = Signer::generate("sealtrail.example/audit", [42; 32]).unwrap();
    let cp = Checkpoint {
        origin: log.name().into(),
        size: SIZE,
        root: tree.root(),
        extensions: vec![],
    };
    let signed = sign_checkpoint(&cp, &log).unwrap().into_bytes();
    for index in [0, 1, 255, 256, 65_535, 65_536, 69_999] {
        let proof = inclusion_proof(&tree, index, SIZE).unwrap();
        let r = Receipt {
            extra: None,
            index,
            proof,
            checkpoint: signed.clone(),
        };
        let r = Receipt::parse(&r.to_bytes()).unwrap();
        let leaf = leaf_hash(&entries[index as usize]);
        assert_eq!(r.verify(&leaf, &log.verifier()).unwrap(), cp);
        let wrong = Receipt {
            index: (index + 1) % SIZE,
            ..r.clone()
        };
        assert!(wrong.verify(&leaf, &log.verifier()).is_err());
    }
}

// ---- properties -------------------------------------------------------------

fn tile_coord() -> impl Strategy<Value = TileCoord> {
    (0u8..=63, any::<u64>(), 1u16..=256).prop_map(|(l, i, w)| TileCoord::new(l, i, w).unwrap())
}

proptest! {
    #[test]
    fn tile_paths_round_trip(t in tile_coord()) {
        prop_assert_eq!(TileCoord::parse_path(&t.path()).unwrap(), (TileKind::Hashes, t));
        let entries = TileCoord::new(0, t.index(), t.width()).unwrap();
        prop_assert_eq!(TileCoord::parse_path(&t.entries_path()).unwrap(), (TileKind::Entries, entries));
    }

    #[test]
    fn tile_path_parsing_is_canonical(path in "tile/(entries|[0-9]{1,3})(/x?[0-9]{1,4}){1,8}(\\.p/[0-9]{1,4})?") {
        // Whatever parses must be the one spelling of its coordinate.
        if let Ok((kind, t)) = TileCoord::parse_path(&path) {
            let canonical = match kind { TileKind::Hashes => t.path(), TileKind::Entries => t.entries_path() };
            prop_assert_eq!(canonical, path);
        }
    }

    #[test]
    fn tile_width_follows_the_spec(size in any::<u64>(), level in 0u8..=8) {
        // "The partial tile at level l for a tree of size s has
        // floor(s / 256**l) mod 256 entries."
        let hashes = size.checked_shr(8 * u32::from(level)).unwrap_or(0);
        let last = tiles(size, level).next_back();
        prop_assert_eq!(last.map(|t| t.index()), hashes.div_ceil(256).checked_sub(1));
        if hashes % 256 != 0 {
            prop_assert_eq!(last.map(|t| u64::from(t.width())), Some(hashes % 256));
        } else {
            prop_assert!(!matches!(last, Some(t) if t.is_partial()));
        }
        prop_assert!(TileCoord::in_tree(size, level, hashes / 256 + 1).is_none());
    }

    #[test]
    fn only_the_last_tile_is_partial(size in 0u64..1 << 20, level in 0u8..3) {
        let all: Vec<TileCoord> = tiles(size, level).collect();
        prop_assert!(all.iter().rev().skip(1).all(|t| !t.is_partial()));
        prop_assert!(all.iter().enumerate().all(|(i, t)| t.index() == i as u64 && t.level() == level));
        let covered: u64 = all.iter().map(|t| u64::from(t.width())).sum();
        prop_assert_eq!(covered, size >> (8 * level));
    }

    #[test]
    fn bundles_round_trip(entries in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 0..=256)) {
        let refs: Vec<&[u8]> = entries.iter().map(|e| &e[..]).collect();
        let bytes = EntryBundle::encode(&refs).unwrap();
        prop_assert_eq!(EntryBundle::decode(&bytes).unwrap(), refs);
    }

    #[test]
    fn checkpoints_round_trip(
        origin in "[^\n]{1,40}",
        size in any::<u64>(),
        root in any::<[u8; 32]>(),
        extensions in prop::collection::vec("[^\n]{1,20}", 0..4),
    ) {
        let cp = Checkpoint { origin, size, root, extensions };
        prop_assert_eq!(Checkpoint::parse(&cp.to_text()).unwrap(), cp);
    }

    #[test]
    fn notes_round_trip(lines in prop::collection::vec("[^\\x00-\\x1f]{0,30}", 1..6), signers in 1usize..4) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let keys: Vec<Signer> =
            (0..signers).map(|i| Signer::generate(&format!("k{i}.example"), [i as u8; 32]).unwrap()).collect();
        let signed = note::sign(&text, &keys.iter().collect::<Vec<_>>()).unwrap();
        let note = Note::parse(signed.as_bytes()).unwrap();
        prop_assert_eq!(&note.text, &text);
        prop_assert_eq!(note.to_bytes(), signed.as_bytes());
        let verifiers: Vec<Verifier> = keys.iter().map(Signer::verifier).collect();
        prop_assert_eq!(note.verify(&verifiers).unwrap().len(), signers);
    }

    #[test]
    fn receipts_round_trip(
        extra in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        index in any::<u64>(),
        proof in prop::collection::vec(any::<[u8; 32]>(), 0..=64),
    ) {
        let log = Signer::generate("example.com/log", [1; 32]).unwrap();
        let cp = Checkpoint { origin: log.name().into(), size: 1, root: [0; 32], extensions: vec![] };
        let checkpoint = sign_checkpoint(&cp, &log).unwrap().into_bytes();
        let r = Receipt { extra, index, proof, checkpoint };
        prop_assert_eq!(Receipt::parse(&r.to_bytes()).unwrap(), r);
    }

    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Note::parse(&bytes);
        let _ = Receipt::parse(&bytes);
        let _ = EntryBundle::decode(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = Checkpoint::parse(&text);
        let _ = TileCoord::parse_path(&text);
        let _ = Verifier::parse(&text);
        let _ = Signer::from_private_key(&text);
    }
}
