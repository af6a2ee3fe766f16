//! The log as served over HTTP, checked with code that is not ours: the
//! checkpoint's Ed25519 signature with `ed25519-dalek` straight from the
//! C2SP note text, and the tiles, entry bundles, root, receipts and proofs
//! with the `ct-merkle` crate's RFC 6962 implementation.

#![allow(clippy::unwrap_used)]

use std::io::Read;

use base64::Engine;
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use sealtrail_meta::Scope;
use sealtrail_server::Server;
use serde_json::{json, Value};
use sha2::Sha256;

mod support;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// 700 entries: two full level-0 tiles, a partial one of 188, and a
/// partial level-1 tile of width 2.
const EVENTS: usize = 700;

struct Client {
    base: String,
    key: String,
}

impl Client {
    fn get(&self, path: &str, gzip: bool) -> (Vec<u8>, http::HeaderMap) {
        let mut req = ureq::get(format!("{}{path}", self.base)).header("Authorization", format!("Bearer {}", self.key));
        if gzip {
            req = req.header("Accept-Encoding", "gzip, identity");
        }
        let mut resp = req.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let headers = resp.headers().clone();
        let body = resp.body_mut().read_to_vec().unwrap();
        (body, headers)
    }

    fn json(&self, path: &str) -> Value {
        serde_json::from_slice(&self.get(path, false).0).unwrap()
    }
}

fn hashes(tile: &[u8]) -> Vec<[u8; 32]> {
    assert_eq!(tile.len() % 32, 0);
    tile.chunks(32).map(|c| c.try_into().unwrap()).collect()
}

/// Decode an entry bundle by its spec: big-endian u16 length, then bytes.
fn bundle_entries(mut bundle: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bundle.is_empty() {
        let len = usize::from(u16::from_be_bytes([bundle[0], bundle[1]]));
        out.push(bundle[2..2 + len].to_vec());
        bundle = &bundle[2 + len..];
    }
    out
}

/// Check a C2SP signed note's Ed25519 signature with the verifier key
/// (`name+hash+base64(0x01 ‖ key)`), returning the note's text.
fn open_note(note: &[u8], vkey: &str) -> String {
    let text = std::str::from_utf8(note).unwrap();
    let (body, sigs) = text.split_once("\n\n").unwrap();
    let body = format!("{body}\n");
    let mut parts = vkey.splitn(3, '+');
    let (name, key_hash, key) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let key = B64.decode(key).unwrap();
    assert_eq!(key[0], 0x01, "an Ed25519 key");
    let public = VerifyingKey::from_bytes(&key[1..].try_into().unwrap()).unwrap();
    let line = sigs
        .lines()
        .find(|l| l.starts_with(&format!("— {name} ")))
        .expect("a signature by the log");
    let sig = B64.decode(line.rsplit(' ').next().unwrap()).unwrap();
    assert_eq!(hex(&sig[..4]), key_hash, "key hash");
    public
        .verify(body.as_bytes(), &Signature::from_bytes(&sig[4..].try_into().unwrap()))
        .expect("the log's signature verifies");
    body
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

type Tree = MemoryBackedTree<Sha256, Vec<u8>>;

fn tree_of(entries: &[Vec<u8>]) -> Tree {
    let mut t = Tree::new();
    for e in entries {
        t.push(e.clone());
    }
    t
}

fn digests(list: &Value) -> Vec<sha2::digest::Output<Sha256>> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let b = B64.decode(h.as_str().unwrap()).unwrap();
            sha2::digest::Output::<Sha256>::try_from(b.as_slice()).unwrap()
        })
        .collect()
}

#[test]
fn tiles_checkpoint_and_proofs_verify_with_independent_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(Server::start(config)).unwrap();
    let key = support::create_key(&server.app, Scope::Admin, None, "verifier");
    let client = Client {
        base: format!("http://{}", server.addr),
        key,
    };

    // Ingest in batches, keeping the size after the first batch for a
    // consistency proof.
    let events: Vec<Value> = (0..EVENTS)
        .map(|i| json!({"action": "doc.viewed", "actor": {"id": format!("u-{}", i % 7)}, "message": format!("view {i}")}))
        .collect();
    let mut old_size = 0;
    for chunk in events.chunks(300) {
        let resp: Value = ureq::post(format!("{}/api/v1/logs/default/events/batch", client.base))
            .header("Authorization", format!("Bearer {}", client.key))
            .header("Content-Type", "application/json")
            .send(serde_json::to_vec(chunk).unwrap())
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        assert_eq!(resp["appended"], chunk.len());
        if old_size == 0 {
            old_size = resp["tree_size"].as_u64().unwrap();
        }
    }

    // The checkpoint: signed by the key the log lists, for all entries.
    let logs = client.json("/api/v1/logs");
    let vkey = logs
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "default")
        .unwrap()["verifier_key"]
        .as_str()
        .unwrap()
        .to_string();
    let (note, headers) = client.get("/logs/default/checkpoint", false);
    assert!(headers["cache-control"].to_str().unwrap().contains("max-age="));
    let body = open_note(&note, &vkey);
    let lines: Vec<&str> = body.lines().collect();
    let size: usize = lines[1].parse().unwrap();
    assert_eq!(size, EVENTS);
    let root = B64.decode(lines[2]).unwrap();

    // Entry bundles (gzip when asked) and level-0 tiles.
    let mut entries = Vec::new();
    for (n, width) in [(0, 256), (1, 256), (2, 188)] {
        let path = if width == 256 {
            format!("/logs/default/tile/entries/{n:03}")
        } else {
            format!("/logs/default/tile/entries/{n:03}.p/{width}")
        };
        let (raw, headers) = client.get(&path, true);
        assert_eq!(headers["content-encoding"], "gzip", "{path}");
        assert_eq!(headers["cache-control"], "public, max-age=31536000, immutable");
        let mut bundle = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut bundle)
            .unwrap();
        let (plain, plain_headers) = client.get(&path, false);
        assert!(plain_headers.get("content-encoding").is_none());
        assert_eq!(plain, bundle);
        let these = bundle_entries(&bundle);
        assert_eq!(these.len(), width);

        let tile_path = path.replace("/entries/", "/0/");
        let (tile, _) = client.get(&tile_path, false);
        let tile = hashes(&tile);
        assert_eq!(tile.len(), width);
        for (e, h) in these.iter().zip(&tile) {
            // A one-leaf tree's root is its leaf hash.
            assert_eq!(tree_of(std::slice::from_ref(e)).root().as_bytes().as_slice(), h);
        }
        entries.extend(these);
    }

    // The whole tree, computed by ct-merkle, has the checkpoint's root.
    let tree = tree_of(&entries);
    assert_eq!(tree.root().as_bytes().as_slice(), root.as_slice());

    // Level 1: each hash is the root of a full level-0 tile.
    let (level1, _) = client.get("/logs/default/tile/1/000.p/2", false);
    let level1 = hashes(&level1);
    for (i, h) in level1.iter().enumerate() {
        assert_eq!(
            tree_of(&entries[i * 256..(i + 1) * 256]).root().as_bytes().as_slice(),
            h
        );
    }

    // Tiles that do not exist (yet) are 404, not a wrong body.
    for missing in [
        "/logs/default/tile/0/003",
        "/logs/default/tile/0/002",
        "/logs/default/tile/0/002.p/189",
    ] {
        let err = ureq::get(format!("{}{missing}", client.base)).call().unwrap_err();
        assert!(matches!(err, ureq::Error::StatusCode(404)), "{missing}: {err}");
    }

    // Inclusion and consistency proofs from the API, checked by ct-merkle.
    let ct_root = RootHash::<Sha256>::new(*tree.root().as_bytes(), EVENTS as u64);
    for index in [0usize, 255, 256, 511, 699] {
        let p = client.json(&format!("/api/v1/logs/default/proofs/inclusion?index={index}"));
        let proof = InclusionProof::<Sha256>::from_digests(digests(&p["proof"]).iter());
        ct_root.verify_inclusion(&entries[index], index as u64, &proof).unwrap();
    }
    let p = client.json(&format!("/api/v1/logs/default/proofs/consistency?from={old_size}"));
    let proof = ConsistencyProof::<Sha256>::from_digests(digests(&p["proof"]).iter());
    let old_root = RootHash::<Sha256>::new(*tree_of(&entries[..old_size as usize]).root().as_bytes(), old_size);
    ct_root.verify_consistency(&old_root, &proof).unwrap();

    server.shutdown();
    rt.block_on(server.wait()).unwrap();
}
