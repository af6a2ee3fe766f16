//! The log as served over HTTP, checked with code that is not ours: the
//! checkpoint's Ed25519 signature with `ed25519-dalek` straight from the
//! C2SP note text, and the tiles, entry bundles, root, receipts and proofs
//! with the `ct-merkle` crate's RFC 6962 implementation; the same again
//! after the server's retention pruned the oldest bundles.

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

    /// POST `body` as JSON to `path`; the reply's JSON.
    fn post(&self, path: &str, body: &(impl serde::Serialize + ?Sized)) -> Value {
        ureq::post(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {}", self.key))
            .header("Content-Type", "application/json")
            .send(serde_json::to_vec(body).unwrap())
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
            .body_mut()
            .read_json()
            .unwrap()
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
        let resp = client.post("/api/v1/logs/default/events/batch", chunk);
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

/// Wait until log `log` is pruned below `below` by the server's own
/// retention thread.
fn wait_pruned(server: &Server, log: &str, below: u64) {
    let trail = server.app.trail(log).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while trail.pruned_below() < below {
        assert!(
            std::time::Instant::now() < deadline,
            "not pruned below {below}: {}",
            trail.pruned_below()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(trail.pruned_below(), below);
}

/// The system log's events of `action`, oldest first, once there are at
/// least `at_least` (the retention thread queues them after pruning).
fn system_events(server: &Server, action: &str, at_least: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let found = system_events_now(server, action);
        if found.len() >= at_least || std::time::Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn system_events_now(server: &Server, action: &str) -> Vec<Value> {
    let system = server.app.trail("system").unwrap();
    system.sync_index().unwrap();
    let filter = sealtrail_trail::Filter {
        action: Some(action.into()),
        ..Default::default()
    };
    system
        .query(&filter, &sealtrail_trail::Page::oldest(100))
        .unwrap()
        .into_iter()
        .map(|f| serde_json::from_slice(&f.entry).unwrap())
        .collect()
}

#[test]
fn a_log_pruned_by_its_policy_still_verifies_with_independent_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.retention.interval_s = 1;
    config.retention.logs.insert(
        "default".into(),
        sealtrail_server::config::RetentionPolicy {
            older_than: None,
            max_size: Some("1".into()),
        },
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(Server::start(config)).unwrap();
    let key = support::create_key(&server.app, Scope::Admin, None, "verifier");
    let client = Client {
        base: format!("http://{}", server.addr),
        key,
    };
    // Entry 300 is the only `doc.held` event; a hold on it is in place
    // before anything is stored.
    let hold = server
        .app
        .meta
        .add_hold(
            "default",
            &sealtrail_trail::Filter {
                action: Some("doc.held".into()),
                ..Default::default()
            },
            "matter 17",
            "test",
            &json!({"id": "test", "type": "user"}),
        )
        .unwrap();
    let events: Vec<Value> = (0..EVENTS)
        .map(|i| {
            let action = if i == 300 { "doc.held" } else { "doc.viewed" };
            json!({"action": action, "actor": {"id": format!("u-{}", i % 7)}, "message": format!("view {i}")})
        })
        .collect();
    let mut sizes = Vec::new();
    for chunk in events.chunks(300) {
        let resp = client.post("/api/v1/logs/default/events/batch", chunk);
        sizes.push(resp["tree_size"].as_u64().unwrap());
    }
    // Every entry, read before pruning, for the independent tree.
    let trail = server.app.trail("default").unwrap();
    let entries = trail.log().entries(0, EVENTS as u64).unwrap();
    let tree = tree_of(&entries);

    // The policy asks for everything but the partial bundle (512); the
    // hold stops it at entry 300's bundle, and the system log says so.
    wait_pruned(&server, "default", 256);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(trail.pruned_below(), 256, "the hold keeps 256 on");
    let stopped = system_events(&server, "retention.stopped", 1);
    assert!(!stopped.is_empty());
    assert_eq!(stopped[0]["details"]["hold"], hold.id);
    assert_eq!(stopped[0]["details"]["below"], 256);
    server
        .app
        .meta
        .release_hold(hold.id, "test", &json!({"id": "test", "type": "user"}))
        .unwrap();
    wait_pruned(&server, "default", 512);

    // Two prunings recorded, with the root of the tree at `to` as an
    // independent implementation computes it.
    let pruned = system_events(&server, "retention.pruned", 2);
    let ranges: Vec<(u64, u64)> = pruned
        .iter()
        .map(|e| {
            (
                e["details"]["from"].as_u64().unwrap(),
                e["details"]["to"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ranges, [(0, 256), (256, 512)]);
    for e in &pruned {
        let to = e["details"]["to"].as_u64().unwrap() as usize;
        assert_eq!(
            e["details"]["root_at_to"].as_str().unwrap(),
            hex(tree_of(&entries[..to]).root().as_bytes())
        );
        assert!(e["details"]["bytes_freed"].as_u64().unwrap() > 0);
    }

    // The checkpoint still verifies and its root is the whole tree's.
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
    let body = open_note(&client.get("/logs/default/checkpoint", false).0, &vkey);
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[1], EVENTS.to_string());
    assert_eq!(B64.decode(lines[2]).unwrap(), tree.root().as_bytes().as_slice());

    // Pruned entry bundles are gone; hash tiles of the pruned range and
    // the kept bundle are served and agree with the independent tree.
    for gone in ["/logs/default/tile/entries/000", "/logs/default/tile/entries/001"] {
        let err = ureq::get(format!("{}{gone}", client.base))
            .header("Authorization", format!("Bearer {}", client.key))
            .call()
            .unwrap_err();
        assert!(matches!(err, ureq::Error::StatusCode(404)), "{gone}: {err}");
    }
    let kept = bundle_entries(&client.get("/logs/default/tile/entries/002.p/188", false).0);
    assert_eq!(kept, entries[512..]);
    for n in 0..2 {
        let tile = hashes(&client.get(&format!("/logs/default/tile/0/{n:03}"), false).0);
        for (i, h) in tile.iter().enumerate() {
            assert_eq!(
                tree_of(std::slice::from_ref(&entries[n * 256 + i]))
                    .root()
                    .as_bytes()
                    .as_slice(),
                h
            );
        }
    }
    let level1 = hashes(&client.get("/logs/default/tile/1/000.p/2", false).0);
    assert_eq!(level1[0], *tree_of(&entries[..256]).root().as_bytes());

    // Inclusion proofs of kept entries and a consistency proof across the
    // pruned range, checked by ct-merkle.
    let ct_root = RootHash::<Sha256>::new(*tree.root().as_bytes(), EVENTS as u64);
    for index in [512usize, 600, 699] {
        let p = client.json(&format!("/api/v1/logs/default/proofs/inclusion?index={index}"));
        let proof = InclusionProof::<Sha256>::from_digests(digests(&p["proof"]).iter());
        ct_root.verify_inclusion(&entries[index], index as u64, &proof).unwrap();
    }
    let old = sizes[0] as usize;
    let p = client.json(&format!("/api/v1/logs/default/proofs/consistency?from={old}"));
    let proof = ConsistencyProof::<Sha256>::from_digests(digests(&p["proof"]).iter());
    let old_root = RootHash::<Sha256>::new(*tree_of(&entries[..old]).root().as_bytes(), old as u64);
    ct_root.verify_consistency(&old_root, &proof).unwrap();

    // Queries and stats no longer see pruned events; a pruned event read
    // by id is 410 with the boundary.
    let stats = client.json("/api/v1/logs/default/stats");
    assert_eq!(stats["total"], EVENTS - 512);
    let pruned_id = sealtrail_event::parse_entry(&entries[10]).unwrap().id.to_string();
    let resp = ureq::get(format!("{}/api/v1/logs/default/events/{pruned_id}", client.base))
        .header("Authorization", format!("Bearer {}", client.key))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(resp.status(), 410);
    let problem: Value = resp.into_body().read_json().unwrap();
    assert_eq!(problem["type"], "urn:sealtrail:problem:pruned");
    assert_eq!(problem["pruned_below"], 512);

    server.shutdown();
    rt.block_on(server.wait()).unwrap();

    // Our verifier, offline, reports the pruned range and finds the rest intact.
    let report = sealtrail_ledger::verify::verify_log(
        &sealtrail_ledger::storage::OsStorage,
        &dir.path().join("logs/default"),
        None,
        None,
    )
    .unwrap();
    assert!(report.intact(), "{:?}", report.findings);
    assert_eq!((report.entries, report.pruned_below), (EVENTS as u64, 512));
}

#[test]
fn packed_bundles_are_served_as_before_and_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    // The test runs compaction itself, at a known moment, and on a busy
    // machine too.
    config.compression.interval_s = 0;
    config.compression.idle_cpus = 0.0;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(Server::start(config)).unwrap();
    let key = support::create_key(&server.app, Scope::Admin, None, "verifier");
    let client = Client {
        base: format!("http://{}", server.addr),
        key,
    };
    let events: Vec<Value> = (0..EVENTS)
        .map(|i| json!({"action": "doc.viewed", "actor": {"id": format!("u-{}", i % 7)}, "message": format!("view {i}")}))
        .collect();
    for chunk in events.chunks(300) {
        client.post("/api/v1/logs/default/events/batch", chunk);
    }
    let paths = [
        "/logs/default/tile/entries/000",
        "/logs/default/tile/entries/001",
        "/logs/default/tile/entries/002.p/188",
        "/logs/default/tile/0/000",
        "/logs/default/tile/0/002.p/188",
        "/logs/default/tile/1/000.p/2",
    ];
    let before: Vec<Vec<u8>> = paths.iter().map(|p| client.get(p, false).0).collect();
    let trail = server.app.open_trail("default").unwrap();
    let entries_before: Vec<Vec<u8>> = (0..EVENTS as u64)
        .map(|i| trail.read(i).unwrap().entry.to_vec())
        .collect();
    let log_dir = dir.path().join("logs/default");
    let entry_bytes = |d: &std::path::Path| -> u64 {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with("entries"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    let raw_before = entry_bytes(&log_dir);

    sealtrail_server::compaction::run_once(&server.app);

    // The two whole bundles are packed and their raw bytes gone; the
    // partial third stays raw.
    let names: Vec<String> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("pack-")), "{names:?}");
    let raw_after = entry_bytes(&log_dir);
    assert!(
        raw_after < raw_before / 2,
        "{raw_before} -> {raw_after} bytes: {names:?}"
    );
    // Everything is served byte for byte as before.
    for (path, old) in paths.iter().zip(&before) {
        assert_eq!(&client.get(path, false).0, old, "{path}");
    }
    for (i, old) in entries_before.iter().enumerate() {
        assert_eq!(&trail.read(i as u64).unwrap().entry.to_vec(), old, "entry {i}");
    }
    drop(trail);
    let health = client.json("/api/v1/system/health");
    assert_eq!(health["compaction_failures"], json!([]), "{health}");
    // Nothing is left waiting to be packed, and nothing was waited for.
    let metrics = String::from_utf8(client.get("/metrics", false).0).unwrap();
    assert!(
        metrics.contains("sealtrail_compaction_waiting_entries{log=\"default\"} 0"),
        "{metrics}"
    );

    // More entries after the packs, then the log still verifies in full.
    client.post("/api/v1/logs/default/events/batch", &events[..100]);
    server.shutdown();
    rt.block_on(server.wait()).unwrap();
    let storage = sealtrail_ledger::storage::OsStorage;
    let report = sealtrail_ledger::verify::verify_log(&storage, &log_dir, None, None).unwrap();
    assert!(report.intact(), "{:?}", report.findings);
    assert_eq!(report.entries, EVENTS as u64 + 100);
}

#[test]
fn a_busy_machine_defers_a_log_below_its_bound_and_packs_one_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config(dir.path());
    config.listen = "127.0.0.1:0".parse().unwrap();
    // The test runs compaction itself; 768 entries waiting force packing.
    config.compression.interval_s = 0;
    config.compression.max_deferred_entries = 768;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(Server::start(config)).unwrap();
    let client = Client {
        base: format!("http://{}", server.addr),
        key: support::create_key(&server.app, Scope::Admin, None, "compactor"),
    };
    // A log whose name comes first and whose backlog stays below the
    // bound, then one past it.
    client.post("/api/v1/logs", &json!({"name": "a-quiet"}));
    let events = |n: usize| -> Value {
        (0..n)
            .map(|i| json!({"action": "doc.viewed", "actor": {"id": format!("u-{}", i % 7)}}))
            .collect()
    };
    client.post("/api/v1/logs/a-quiet/events/batch", &events(600));
    for _ in 0..4 {
        client.post("/api/v1/logs/default/events/batch", &events(300));
    }
    let quiet = server.app.open_trail("a-quiet").unwrap();
    let busy_log = server.app.open_trail("default").unwrap();
    assert_eq!((quiet.log().unpacked(), busy_log.log().unpacked()), (512, 1024));

    // A machine of two CPUs, both busy at normal priority, whatever the
    // test machine is doing.
    let mut ticks = 0u64;
    let meter = sealtrail_ledger::CpuMeter::from_source(move || {
        ticks += 100;
        Some(format!("cpu  {ticks} 0 0 0 0 0 0 0\ncpu0 0 0 0 0 0\ncpu1 0 0 0 0 0\n"))
    });
    let app = server.app.clone();
    let run = std::thread::spawn(move || sealtrail_server::compaction::run_measured(&app, meter));
    let began = std::time::Instant::now();
    while busy_log.log().unpacked() > 0 {
        assert!(
            began.elapsed().as_secs() < 30,
            "the log past its bound was never packed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The run keeps looking at the deferred log until the server stops it.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(!run.is_finished());
    server.app.compaction.stop();
    run.join().unwrap();
    assert_eq!(quiet.log().unpacked(), 512);
    let names = |log: &str| -> Vec<String> {
        std::fs::read_dir(dir.path().join("logs").join(log))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert!(!names("a-quiet").iter().any(|n| n.starts_with("pack-")));
    assert!(names("default").iter().any(|n| n.starts_with("pack-")));
    let metrics = String::from_utf8(client.get("/metrics", false).0).unwrap();
    assert!(
        metrics.contains("sealtrail_compaction_waiting_entries{log=\"a-quiet\"} 512"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sealtrail_compaction_waiting_entries{log=\"default\"} 0"),
        "{metrics}"
    );
    let waited = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sealtrail_compaction_wait_ms_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(waited >= 1000.0, "{metrics}");
}
