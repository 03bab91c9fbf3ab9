//! Signature verification latency against a local `docker-registry` (loopback):
//! cold (cache bypassed, registry round-trips) and warm (cached) p50/p99, and
//! in-process throughput of `check()` with every image cached.
//!
//!   cargo run --release -p guardrail-e2e --example signatures_latency
//!
//! Numbers go into reports, never into test assertions.

use std::time::{Duration, Instant};

use guardrail_e2e::registry::cosign::{payload, push_signatures, sign_with_keys, KeySigner};
use guardrail_e2e::registry::keyless::{Identity, TestSigstore};
use guardrail_e2e::registry::sigstore_js::{attach_bundle, attach_keyless_bundle, KeylessSigning};
use guardrail_e2e::registry::{verifier, write, RegistryOptions, TestRegistry};
use guardrail_webhook::signatures::ImageVerdict;

const COLD: usize = 300;
const WARM: usize = 20_000;
const THROUGHPUT_TASKS: usize = 4;
const THROUGHPUT_CHECKS: usize = 50_000;

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name:>12}: n={} p50={:?} p90={:?} p99={:?} max={:?}",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        at(1.0)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let reg = TestRegistry::start(RegistryOptions::default());
    let key = KeySigner::new();
    let digest = reg.push_image("models/llm", "v1").await;
    sign_with_keys(&reg, "models/llm", &digest, &[&key]).await;
    let image = reg.pinned("models/llm", &digest);
    let key_file = write(reg.dir.path(), "cosign.pub", &key.public_pem);
    let config = |cache: &str| {
        format!(
            "cache: {cache}\nregistries: [{{host: \"{host}\", insecure: true}}]\nrules:\n- images: [\"{host}/**\"]\n  keys: [{{file: {key}}}]\n",
            host = reg.host,
            key = key_file.display()
        )
    };

    // Cold: results expire at once, so every check goes to the registry.
    let (cold, _) = verifier(&config("{positiveTtl: 1ns, negativeTtl: 1ns}"), None);
    let sig_path = format!("/manifests/{}.sig", digest.replace(':', "-"));
    let before = reg
        .log()
        .lines()
        .filter(|l| l.contains("\"GET ") || l.contains("\"HEAD "))
        .count();
    let mut samples = Vec::with_capacity(COLD);
    for _ in 0..COLD {
        let t = Instant::now();
        let verdict = cold.check(&image).await;
        samples.push(t.elapsed());
        assert_eq!(verdict, ImageVerdict::Allowed);
    }
    let after = reg
        .log()
        .lines()
        .filter(|l| l.contains("\"GET ") || l.contains("\"HEAD "))
        .count();
    percentiles("cold", samples);
    if std::env::var_os("SHOW_REQUESTS").is_some() {
        let log = reg.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("127.0.0.1 - "))
            .collect();
        for l in &lines[lines.len().saturating_sub(17)..] {
            println!("{l}");
        }
    }
    println!(
        "       registry requests per cold check: {:.1} (signature manifest fetched {} times)",
        (after - before) as f64 / COLD as f64,
        reg.requests_for(&sig_path)
    );

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
    let keyless_config = format!(
        "cache: {{positiveTtl: 1ns}}\nregistries: [{{host: \"{host}\", insecure: true}}]\nrules:\n- images: [\"{host}/**\"]\n  keyless:\n    trustedRoot: {root}\n    identities: [{{issuer: \"{issuer}\", subject: \"{subject}\"}}]\n",
        host = reg.host,
        root = sigstore.write_trusted_root(reg.dir.path()).display(),
        issuer = id.issuer,
        subject = id.subject
    );
    let (keyless, _) = verifier(&keyless_config, None);
    let keyless_image = reg.pinned("models/llm", &keyless_digest);
    let mut samples = Vec::with_capacity(COLD);
    for _ in 0..COLD {
        let t = Instant::now();
        let verdict = keyless.check(&keyless_image).await;
        samples.push(t.elapsed());
        assert_eq!(verdict, ImageVerdict::Allowed);
    }
    percentiles("cold keyless", samples);

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
    let bundle_config = format!(
        "cache: {{positiveTtl: 1ns, negativeTtl: 1ns}}\nregistries: [{{host: \"{host}\", insecure: true}}]\nrules:\n- images: [\"{host}/**\"]\n  keys: [{{file: {key}}}]\n",
        host = authed.host,
        key = key_file.display()
    );
    let (bundles, _) = verifier(&bundle_config, Some(&auth_file));
    let bundle_image = authed.pinned("models/llm", &bundle_digest);
    let mut samples = Vec::with_capacity(COLD);
    for _ in 0..COLD {
        let t = Instant::now();
        let verdict = bundles.check(&bundle_image).await;
        samples.push(t.elapsed());
        assert_eq!(verdict, ImageVerdict::Allowed);
    }
    percentiles("cold bundle", samples);

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
    let keyless_bundle_config = format!(
        "cache: {{positiveTtl: 1ns, negativeTtl: 1ns}}\nregistries: [{{host: \"{host}\", insecure: true}}]\nrules:\n- images: [\"{host}/**\"]\n  keyless:\n    trustedRoot: {root}\n    identities: [{{issuer: \"{issuer}\", subject: \"{subject}\"}}]\n",
        host = authed.host,
        root = root.display()
    );
    let (keyless_bundles, _) = verifier(&keyless_bundle_config, Some(&auth_file));
    let keyless_bundle_image = authed.pinned("models/llm", &keyless_bundle_digest);
    let mut samples = Vec::with_capacity(COLD);
    for _ in 0..COLD {
        let t = Instant::now();
        let verdict = keyless_bundles.check(&keyless_bundle_image).await;
        samples.push(t.elapsed());
        assert_eq!(verdict, ImageVerdict::Allowed);
    }
    percentiles("cold keyless bundle", samples);

    let (warm, _) = verifier(&config("{}"), None);
    assert_eq!(warm.check(&image).await, ImageVerdict::Allowed);
    let mut samples = Vec::with_capacity(WARM);
    for _ in 0..WARM {
        let t = Instant::now();
        let verdict = warm.check(&image).await;
        samples.push(t.elapsed());
        assert_eq!(verdict, ImageVerdict::Allowed);
    }
    percentiles("warm", samples);

    let started = Instant::now();
    let tasks: Vec<_> = (0..THROUGHPUT_TASKS)
        .map(|_| {
            let (v, image) = (warm.clone(), image.clone());
            tokio::spawn(async move {
                for _ in 0..THROUGHPUT_CHECKS / THROUGHPUT_TASKS {
                    assert!(v.check(&image).await.is_allowed());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("throughput task");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "cached throughput: {:.0} checks/s ({THROUGHPUT_CHECKS} checks, {THROUGHPUT_TASKS} tasks, 2 worker threads)",
        THROUGHPUT_CHECKS as f64 / secs
    );
}
