//! Unit tests of `certs generate`.

use super::*;

#[test]
fn generate_writes_all_files_with_service_sans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = GenerateArgs {
        service: "guardrail".into(),
        namespace: "guardrail-system".into(),
        out: dir.path().join("out"),
        days: 30,
        force: false,
    };
    generate(&args).expect("generate");
    for name in ["ca.crt", "ca.key", "tls.crt", "tls.key", "caBundle"] {
        assert!(args.out.join(name).is_file(), "{name} missing");
    }
    let ca = std::fs::read_to_string(args.out.join("ca.crt")).expect("ca.crt");
    let bundle = std::fs::read_to_string(args.out.join("caBundle")).expect("caBundle");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .expect("base64");
    assert_eq!(decoded, ca.as_bytes());
    let infos = crate::load::inspect_pem_file(&args.out.join("tls.crt")).expect("tls.crt");
    assert_eq!(
        infos[0].dns_names,
        service_dns_names("guardrail", "guardrail-system")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(args.out.join("tls.key"))
            .expect("tls.key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A second run must not silently replace the CA.
    let err = generate(&args).expect_err("ca.key exists");
    assert!(err.to_string().contains("--force"), "{err}");
    generate(&GenerateArgs {
        force: true,
        ..args
    })
    .expect("forced");
}

#[test]
fn generate_rejects_bad_arguments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = GenerateArgs {
        service: "svc".into(),
        namespace: "ns".into(),
        out: dir.path().to_path_buf(),
        days: 10,
        force: false,
    };
    let cases = [
        (
            GenerateArgs {
                service: "Bad_Name".into(),
                ..base.clone()
            },
            "--service",
        ),
        (
            GenerateArgs {
                namespace: String::new(),
                ..base.clone()
            },
            "--namespace",
        ),
        (GenerateArgs { days: 0, ..base }, "--days"),
    ];
    for (args, field) in cases {
        let err = generate(&args).expect_err(field);
        assert!(err.to_string().contains(field), "{err}");
    }
}
