//! Writes the seed corpora under fuzz/seeds/<target>/: a few small, valid
//! inputs per target, built with the crates' own encoders and the fixed
//! fuzzing key. Deterministic, so rerunning it reproduces the committed files.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds

use std::fs;
use std::path::{Path, PathBuf};

use sealtrail_fuzz::{log_signer, other_signer, LOG_NAME};
use sealtrail_ledger::format::{
    encode_header, encode_record, Slot, ENTRIES_MAGIC, HASHES_MAGIC, INDEX_MAGIC, SLOT_MAGIC,
};
use sealtrail_merkle::checkpoint::{sign_checkpoint, Checkpoint};
use sealtrail_merkle::note::{self, Signer};
use sealtrail_merkle::receipt::Receipt;
use sealtrail_merkle::tile::{EntryBundle, TileCoord};
use sealtrail_merkle::{inclusion_proof, leaf_hash, MemoryTree};
use sealtrail_segment::{merge, ColumnKind, Segment, SegmentBuilder};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn write(root: &Path, target: &str, name: &str, bytes: impl AsRef<[u8]>) -> Result {
    let dir = root.join(target);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(name), bytes)?;
    Ok(())
}

/// A small log: entries, the tree over them and its signed checkpoint.
struct SmallLog {
    entries: Vec<Vec<u8>>,
    tree: MemoryTree,
    checkpoint: Checkpoint,
    note: String,
}

fn small_log(signer: &Signer, extensions: Vec<String>) -> Result<SmallLog> {
    let entries: Vec<Vec<u8>> = (0..13u8)
        .map(|i| format!("{{\"event\":\"e{i}\"}}").into_bytes())
        .collect();
    let mut tree = MemoryTree::new();
    for e in &entries {
        tree.push(leaf_hash(e));
    }
    let checkpoint = Checkpoint {
        origin: LOG_NAME.into(),
        size: tree.size(),
        root: tree.root(),
        extensions,
    };
    let note = sign_checkpoint(&checkpoint, signer)?;
    Ok(SmallLog {
        entries,
        tree,
        checkpoint,
        note,
    })
}

fn main() -> Result {
    let root = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"),
    };
    let log = log_signer();
    let other = other_signer();
    let plain = small_log(&log, vec![])?;
    let extended = small_log(&log, vec!["ext one".into(), "\u{2014} two".into()])?;

    // ledger_header: each file kind's header, and one from a future version.
    for (name, magic) in [
        ("entries", ENTRIES_MAGIC),
        ("index", INDEX_MAGIC),
        ("hashes", HASHES_MAGIC),
        ("slot", SLOT_MAGIC),
    ] {
        write(&root, "ledger_header", name, encode_header(magic))?;
    }
    let mut v2 = encode_header(ENTRIES_MAGIC);
    v2[11] = 2;
    write(&root, "ledger_header", "version2", v2)?;

    // ledger_record: 8-byte entry index, then consecutive records.
    for (name, first, count) in [
        ("records_0", 0u64, 3usize),
        ("records_big_index", 0x0000_0001_0000_0000, 2),
    ] {
        let mut out = first.to_be_bytes().to_vec();
        for (i, e) in plain.entries.iter().take(count).enumerate() {
            encode_record(&mut out, e, first + i as u64);
        }
        write(&root, "ledger_record", name, out)?;
    }
    let mut empty = 7u64.to_be_bytes().to_vec();
    encode_record(&mut empty, b"", 7);
    write(&root, "ledger_record", "empty_entry", empty)?;

    // ledger_slot: slots trimmed to the bytes they use (40 + note + crc).
    for (name, note) in [
        ("slot_checkpoint", plain.note.as_bytes()),
        ("slot_empty_note", b"".as_slice()),
    ] {
        let slot = Slot {
            seq: 2,
            derived_size: 13,
            derived_offset: 16 + 13 * 24,
            note: note.to_vec(),
        };
        let bytes = slot.encode()?;
        write(&root, "ledger_slot", name, &bytes[..40 + note.len() + 4])?;
    }

    // note_parse and checkpoint_open: signed checkpoints, one cosigned by a
    // second key under the same name and one by a different name.
    let witness = Signer::generate("witness.example", [0x33; 32])?;
    let cosigned = note::sign(&extended.checkpoint.to_text(), &[&log, &other, &witness])?;
    for target in ["note_parse", "checkpoint_open"] {
        write(&root, target, "checkpoint", &plain.note)?;
        write(&root, target, "checkpoint_cosigned", &cosigned)?;
    }
    write(
        &root,
        "note_parse",
        "blank_lines",
        note::sign("a\n\nb\n\n", &[&witness])?,
    )?;

    // note_verifier and note_signer: key texts.
    for (name, s) in [("log", &log), ("witness", &witness)] {
        write(&root, "note_verifier", name, s.verifier().to_string())?;
        write(&root, "note_signer", name, s.to_private_key())?;
    }

    // checkpoint_parse: checkpoint text with and without extensions.
    write(&root, "checkpoint_parse", "plain", plain.checkpoint.to_text())?;
    write(&root, "checkpoint_parse", "extensions", extended.checkpoint.to_text())?;

    // tile_path: full and partial tiles at several levels, entry bundles.
    let coords = [(0, 0, 256), (0, 1_234_067, 8), (2, 5, 256), (63, 5, 255)];
    for (i, (level, index, width)) in coords.into_iter().enumerate() {
        let c = TileCoord::new(level, index, width)?;
        write(&root, "tile_path", &format!("hashes_{i}"), c.path())?;
        if level == 0 {
            write(&root, "tile_path", &format!("entries_{i}"), c.entries_path())?;
        }
    }

    // tile_bundle: small bundles, and a two-hash tile body.
    let refs: Vec<&[u8]> = plain.entries.iter().take(4).map(Vec::as_slice).collect();
    write(&root, "tile_bundle", "bundle_4", EntryBundle::encode(&refs)?)?;
    write(
        &root,
        "tile_bundle",
        "bundle_empty_entries",
        EntryBundle::encode(&[b"", b"", b"x"])?,
    )?;
    write(
        &root,
        "tile_bundle",
        "hashes_2",
        [leaf_hash(b"a"), leaf_hash(b"b")].concat(),
    )?;

    // receipt_parse: the entry travels in `extra` (the target verifies
    // against leaf_hash(extra)); one receipt has no extra.
    for (name, index, with_extra, log) in [
        ("index_0", 0u64, true, &plain),
        ("index_5", 5, true, &extended),
        ("no_extra", 12, false, &plain),
    ] {
        let proof = inclusion_proof(&log.tree, index, log.tree.size()).unwrap_or_else(|e| match e {});
        let extra = with_extra.then(|| log.entries[index as usize].clone());
        let receipt = Receipt {
            extra,
            index,
            proof,
            checkpoint: log.note.clone().into_bytes(),
        };
        write(&root, "receipt_parse", name, receipt.to_bytes())?;
    }
    let cosigned_receipt = Receipt {
        extra: Some(extended.entries[1].clone()),
        index: 1,
        proof: inclusion_proof(&extended.tree, 1, 13).unwrap_or_else(|e| match e {}),
        checkpoint: cosigned.into_bytes(),
    };
    write(&root, "receipt_parse", "cosigned", cosigned_receipt.to_bytes())?;

    // event_json: events as senders write them; event_entry: their stored
    // canonical entries (server fields as the event_json target fixes them).
    let received_at = sealtrail_event::Timestamp::from_second(1_767_225_600)?;
    let id = sealtrail_event::event_id(received_at, [0x11; 10])?;
    let events: [(&str, &str); 3] = [
        ("minimal", r#"{"action": "user.login"}"#),
        (
            "full",
            r#"{
  "occurred_at": "2024-05-01T14:29:58.120+02:00",
  "tenant": "acme",
  "action": "invoice.deleted",
  "crud": "d",
  "outcome": "success",
  "severity": "notice",
  "actor": {"id": "user-42", "type": "user", "name": "Ada Lovelace", "roles": ["billing-admin"],
            "impersonator": {"id": "ops-1", "type": "service"}},
  "targets": [{"type": "invoice", "id": "INV-2024-0042"}, {"type": "customer", "id": "C-7", "name": "Zoë"}],
  "source": {"service": "billing-api", "version": "1.4.2", "environment": "production", "host": "web-3"},
  "context": {"ip": "2001:DB8:0:0:0:0:0:17", "request_id": "req-7f3a", "user_agent": "curl/8"},
  "changes": {"before": {"total": 120.5, "lines": [1, 2]}, "after": null, "fields": ["total"]},
  "message": "Invoice deleted €",
  "duration_ms": 12.50,
  "error": {"type": "none", "message": "-"},
  "details": {"reason": "duplicate", "amount_cents": 12000, "Zone": null, "ratio": 1e-7, "é": [true, false]},
  "idempotency_key": "k-1"
}"#,
        ),
        (
            "ipv4_failure",
            r#"{"action":"auth.failed","outcome":"failure","context":{"ip":"192.0.2.7"},"details":{}}"#,
        ),
    ];
    for (name, text) in events {
        write(&root, "event_json", name, text)?;
        let event = sealtrail_event::accept_json(text.as_bytes(), received_at, id)?;
        write(&root, "event_entry", name, sealtrail_event::canonical_entry(&event)?)?;
    }

    // event_timestamp: RFC 3339 times in the forms senders use.
    for (i, t) in [
        "2024-05-01T14:29:58.120+02:00",
        "2026-01-01T00:00:00Z",
        "1999-12-31t23:59:60.5-00:30",
    ]
    .into_iter()
    .enumerate()
    {
        write(&root, "event_timestamp", &format!("time_{i}"), t)?;
    }

    // segment_open: small segments from the builder, and a merge of two.
    let kinds = [ColumnKind::Value, ColumnKind::Term(0)];
    let segment = |docs: u32, words: &[&str]| -> Result<Vec<u8>> {
        let mut b = SegmentBuilder::new(&kinds);
        for d in 0..docs {
            b.add_doc();
            let w = words[d as usize % words.len()];
            let action = b.add_term(0, w.as_bytes());
            b.set(1, action);
            b.add_term(1, format!("actor-{}", d % 7).as_bytes());
            b.set(0, 1_700_000_000 + u64::from(d) * 3);
        }
        Ok(b.finish(Vec::new())?)
    };
    write(&root, "segment_open", "empty", SegmentBuilder::new(&kinds).finish(Vec::new())?)?;
    write(&root, "segment_open", "three_docs", segment(3, &["login", "logout"])?)?;
    let two_blocks = segment(140, &["login", "export", "delete"])?;
    write(&root, "segment_open", "two_blocks", &two_blocks)?;
    let (a, b) = (Segment::open(segment(5, &["a"])?)?, Segment::open(two_blocks)?);
    write(&root, "segment_open", "merged", merge(&[&a, &b], Vec::new())?)?;

    println!("seeds written to {}", root.display());
    Ok(())
}
