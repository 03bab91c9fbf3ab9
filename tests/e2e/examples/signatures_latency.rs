//! Signature verification latency against a local `docker-registry` (loopback):
//! cold (cache bypassed, registry round-trips) and warm (cached) percentiles for each
//! kind of signature (legacy `.sig` with a key and keyless; cosign v3 bundles, made by
//! sigstore-js, with a key and keyless), registry requests per cold check, and the
//! in-process throughput of `check()` with every image cached.
//!
//!   cargo run --release -p guardrail-e2e --example signatures_latency -- \
//!       [--cold 300] [--warm 20000] [--checks 50000] [--json out.json]
//!
//! `bench/run` runs it once per repetition (its `signatures` scenario). Numbers go
//! into reports, never into test assertions.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use guardrail_e2e::registry::cosign::{payload, push_signatures, sign_with_keys, KeySigner};
use guardrail_e2e::registry::keyless::{Identity, TestSigstore};
use guardrail_e2e::registry::sigstore_js::{attach_bundle, attach_keyless_bundle, KeylessSigning};
use guardrail_e2e::registry::{verifier, write, RegistryOptions, TestRegistry};
use guardrail_webhook::signatures::{ImageVerdict, SignatureVerifier};
use oci_client::Reference;
use serde_json::{json, Value};

const THROUGHPUT_TASKS: usize = 4;

struct Args {
    cold: usize,
    warm: usize,
    checks: usize,
    json: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut args = Args {
        cold: 300,
        warm: 20_000,
        checks: 50_000,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value (see the usage at the top)"));
        let count = || -> usize {
            value
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or_else(|| panic!("{flag} {value}: expected a positive count"))
        };
        match flag.as_str() {
            "--cold" => args.cold = count(),
            "--warm" => args.warm = count(),
            "--checks" => args.checks = count(),
            "--json" => args.json = Some(value.into()),
            _ => panic!("unknown argument {flag}: --cold N --warm N --checks N --json PATH"),
        }
    }
    args
}

/// `n` timed checks of `image`, each of which must allow it.
async fn timed(v: &SignatureVerifier, image: &Reference, n: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let verdict = v.check(image).await;
        samples.push(t.elapsed());
        assert_eq!(verdict, ImageVerdict::Allowed, "{image}");
    }
    samples
}

/// Nearest-rank percentiles in microseconds, printed and returned.
fn percentiles(name: &str, mut samples: Vec<Duration>) -> Value {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let us = |d: Duration| (d.as_secs_f64() * 1e7).round() / 10.0;
    println!(
        "{name:>20}: n={} p50={:?} p90={:?} p99={:?} max={:?}",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(1.0)
    );
    json!({"n": samples.len(), "p50_us": us(at(0.50)), "p90_us": us(at(0.90)),
           "p99_us": us(at(0.99)), "max_us": us(at(1.0))})
}

/// Cache entries expiring at once: every check goes to the registry.
const COLD: &str = "{positiveTtl: 1ns, negativeTtl: 1ns}";

/// A `signatures:` config with one `rule` covering every image of `host`.
fn config(host: &str, cache: &str, rule: &str) -> String {
    format!(
        "cache: {cache}\nregistries: [{{host: \"{host}\", insecure: true}}]\nrules:\n- images: [\"{host}/**\"]\n  {rule}\n"
    )
}

fn key_rule(key: &Path) -> String {
    format!("keys: [{{file: {}}}]", key.display())
}

fn keyless_rule(root: &Path, issuer: &str, subject: &str) -> String {
    format!(
        "keyless:\n    trustedRoot: {}\n    identities: [{{issuer: \"{issuer}\", subject: \"{subject}\"}}]",
        root.display()
    )
}

/// What the run found: each kind's percentiles and, for the cold ones, the registry
/// requests per check.
struct Report {
    cold: usize,
    kinds: serde_json::Map<String, Value>,
    requests: serde_json::Map<String, Value>,
}

impl Report {
    /// `cold` checks of `image` on `reg`, reported as "cold `kind`".
    async fn cold(
        &mut self,
        kind: &str,
        v: &SignatureVerifier,
        reg: &TestRegistry,
        image: &Reference,
    ) {
        let before = registry_requests(reg);
        let samples = timed(v, image, self.cold).await;
        let per_check = (registry_requests(reg) - before) as f64 / self.cold as f64;
        let name = format!("cold {kind}");
        self.kinds.insert(name.clone(), percentiles(&name, samples));
        self.requests.insert(kind.into(), per_check.into());
        println!("registry requests per {name} check: {per_check:.1}");
    }
}

fn registry_requests(reg: &TestRegistry) -> usize {
    (reg.log().lines())
        .filter(|l| l.contains("\"GET ") || l.contains("\"HEAD "))
        .count()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let mut report = Report {
        cold: args.cold,
        kinds: serde_json::Map::new(),
        requests: serde_json::Map::new(),
    };
    let reg = TestRegistry::start(RegistryOptions::default());
    let key = KeySigner::new();
    let digest = reg.push_image("models/llm", "v1").await;
    sign_with_keys(&reg, "models/llm", &digest, &[&key]).await;
    let image = reg.pinned("models/llm", &digest);
    let key_file = write(reg.dir.path(), "cosign.pub", &key.public_pem);
    let key_rule = key_rule(&key_file);

    let (v, _) = verifier(&config(&reg.host, COLD, &key_rule), None);
    report.cold("key .sig", &v, &reg, &image).await;

    // Keyless cold path: sigstore-rs fetches the layers and checks chain and SET.
    let sigstore = TestSigstore::new();
    let keyless_digest = reg.push_image("models/llm", "keyless").await;
    let id = Identity {
        subject: "release@acme.example",
        issuer: "https://issuer.example",
    };
    let layer = sigstore.sign(
        payload(&format!("{}/models/llm", reg.host), &keyless_digest),
        &id,
        true,
    );
    push_signatures(&reg, "models/llm", &keyless_digest, &[layer]).await;
    let root = sigstore.write_trusted_root(reg.dir.path());
    let rule = keyless_rule(&root, id.issuer, id.subject);
    let (v, _) = verifier(&config(&reg.host, COLD, &rule), None);
    let image_keyless = reg.pinned("models/llm", &keyless_digest);
    report.cold("keyless .sig", &v, &reg, &image_keyless).await;

    // Cold v3 bundle (key-signed, OCI referrers through the tag schema), made by
    // sigstore-js; the registry asks for credentials, as @sigstore/oci needs.
    let authed = TestRegistry::start(RegistryOptions {
        tls: None,
        basic_auth: Some(("ci", "s3cret")),
    });
    let bundle_digest = authed.push_image("models/llm", "v3").await;
    attach_bundle(&authed, "models/llm", &bundle_digest, &key, &bundle_digest);
    let auth_file = write(
        authed.dir.path(),
        "dockerconfig.json",
        &format!(
            r#"{{"auths":{{"{}":{{"username":"ci","password":"s3cret"}}}}}}"#,
            authed.host
        ),
    );
    let (v, _) = verifier(&config(&authed.host, COLD, &key_rule), Some(&auth_file));
    let bundle_image = authed.pinned("models/llm", &bundle_digest);
    report
        .cold("key v3 bundle", &v, &authed, &bundle_image)
        .await;

    // Cold keyless v3 bundle (mock Fulcio and Rekor in the signer's process).
    let keyless_bundle_digest = authed.push_image("models/llm", "v3-keyless").await;
    let root = authed.dir.path().join("trusted_root.json");
    let issuer = "https://token.actions.githubusercontent.com";
    let subject = "https://github.com/acme/models/.github/workflows/release.yml@refs/tags/v1";
    let signing = KeylessSigning {
        issuer,
        subject,
        trusted_root: &root,
        no_tlog: false,
        forge_integrated_time: false,
    };
    attach_keyless_bundle(
        &authed,
        "models/llm",
        &keyless_bundle_digest,
        &keyless_bundle_digest,
        &signing,
    );
    let rule = keyless_rule(&root, issuer, subject);
    let (v, _) = verifier(&config(&authed.host, COLD, &rule), Some(&auth_file));
    let image_v3 = authed.pinned("models/llm", &keyless_bundle_digest);
    report
        .cold("keyless v3 bundle", &v, &authed, &image_v3)
        .await;

    // Warm: the key .sig image's verdict, cached after the first check (the cache
    // holds verdicts, whatever kind of signature they came from).
    let (warm, _) = verifier(&config(&reg.host, "{}", &key_rule), None);
    assert_eq!(warm.check(&image).await, ImageVerdict::Allowed);
    let samples = timed(&warm, &image, args.warm).await;
    report
        .kinds
        .insert("warm".into(), percentiles("warm", samples));

    let started = Instant::now();
    let per_task = args.checks.div_ceil(THROUGHPUT_TASKS);
    let tasks: Vec<_> = (0..THROUGHPUT_TASKS)
        .map(|_| {
            let (v, image) = (warm.clone(), image.clone());
            tokio::spawn(async move {
                for _ in 0..per_task {
                    assert!(v.check(&image).await.is_allowed());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("throughput task");
    }
    let checks_per_s = (per_task * THROUGHPUT_TASKS) as f64 / started.elapsed().as_secs_f64();
    println!(
        "cached throughput: {checks_per_s:.0} checks/s ({} checks, {THROUGHPUT_TASKS} tasks, 2 worker threads)",
        per_task * THROUGHPUT_TASKS
    );

    if let Some(path) = args.json {
        let out = json!({
            "kinds": report.kinds,
            "registry_requests_per_cold_check": report.requests,
            "cached_checks_per_s": checks_per_s.round(),
            "throughput_tasks": THROUGHPUT_TASKS,
            "worker_threads": 2,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&out).expect("JSON"))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}
