use super::*;

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn parse(image: &str) -> ImageRef {
    ImageRef::parse(image).unwrap_or_else(|e| panic!("{image}: {e}"))
}

#[test]
fn docker_hub_defaults_are_applied() {
    let r = parse("nginx");
    assert_eq!(r.normalised(), "docker.io/library/nginx:latest");
    assert!(r.is_implicit_latest());
    assert_eq!(r.digest(), None);

    let r = parse("acme/server:1.0");
    assert_eq!(r.repository(), "docker.io/acme/server");
    assert!(!r.is_implicit_latest());
    assert_eq!(r.tag(), Some("1.0"));

    // The legacy hub host is the same registry.
    assert_eq!(
        parse("index.docker.io/library/nginx:1").repository(),
        "docker.io/library/nginx"
    );
}

#[test]
fn registry_ports_are_not_tags() {
    let r = parse("registry.local:5000/team/model");
    assert_eq!(r.repository(), "registry.local:5000/team/model");
    assert!(r.is_implicit_latest(), "the :5000 is a port, not a tag");

    let r = parse(&format!("localhost:5000/model@sha256:{HEX}"));
    assert_eq!(r.repository(), "localhost:5000/model");
    assert_eq!(r.digest(), Some(format!("sha256:{HEX}").as_str()));
    assert!(!r.is_implicit_latest());
}

#[test]
fn nested_paths_keep_every_segment() {
    let r = parse("us-docker.pkg.dev/proj/repo/sub/model:v2");
    assert_eq!(r.repository(), "us-docker.pkg.dev/proj/repo/sub/model");
    assert_eq!(r.tag(), Some("v2"));
}

#[test]
fn tag_and_digest_together_keep_both() {
    let r = parse(&format!("ghcr.io/acme/llm:2.1@sha256:{HEX}"));
    assert_eq!(r.tag(), Some("2.1"));
    assert_eq!(r.digest(), Some(format!("sha256:{HEX}").as_str()));
    assert_eq!(r.normalised(), format!("ghcr.io/acme/llm:2.1@sha256:{HEX}"));
}

#[test]
fn uppercase_repository_is_rejected_with_the_lowercase_form() {
    match ImageRef::parse("ghcr.io/Acme/Model:1") {
        Err(ImageError::Uppercase(_, lower)) => assert_eq!(lower, "ghcr.io/acme/model:1"),
        other => panic!("expected an uppercase error, got {other:?}"),
    }
    // Uppercase in a tag is legal.
    assert_eq!(parse("acme/model:V1").tag(), Some("V1"));
    // Registry host names are case-insensitive and may be written in uppercase.
    assert_eq!(parse("Registry.Example.com/model:1").tag(), Some("1"));
}

#[test]
fn malformed_digests_are_rejected() {
    let cases = [
        "acme/model@sha256:deadbeef".to_string(),
        format!("acme/model@sha256:{}", HEX.to_uppercase()),
        format!("acme/model@sha256:{}", &HEX[..63]),
        format!("acme/model@md5:{HEX}"),
    ];
    for image in cases {
        match ImageRef::parse(&image) {
            Err(ImageError::Digest(_)) => {}
            other => panic!("{image}: expected a digest error, got {other:?}"),
        }
    }
}

#[test]
fn empty_and_garbage_are_errors() {
    assert_eq!(ImageRef::parse("  ").unwrap_err(), ImageError::Empty);
    assert!(matches!(
        ImageRef::parse("a b c"),
        Err(ImageError::Invalid(_))
    ));
    assert!(matches!(
        ImageRef::parse(":tagonly"),
        Err(ImageError::Invalid(_))
    ));
}

#[test]
fn only_sha256_digests_are_accepted() {
    // Legal for the runtime, but no registry signature or verifier of ours keys on them.
    for (algorithm, len) in [("sha512", 128), ("sha384", 96)] {
        let image = format!("nginx@{algorithm}:{}", "a".repeat(len));
        match ImageRef::parse(&image) {
            Err(ImageError::Digest(message)) => {
                assert!(message.contains("sha256 digests only"), "{message}")
            }
            other => panic!("{image}: {other:?}"),
        }
    }
}

#[test]
fn whitespace_and_control_characters_are_not_references() {
    for image in [
        format!(" nginx@sha256:{HEX}"),
        format!("nginx@sha256:{HEX}\n"),
        format!("nginx@sha256:{HEX} "),
        format!("ng\tinx@sha256:{HEX}"),
        format!("nginx\u{0}@sha256:{HEX}"),
        format!("quay.io/acme/../x@sha256:{HEX}"),
    ] {
        assert!(ImageRef::parse(&image).is_err(), "{image:?} must not parse");
    }
}

#[test]
fn an_uppercase_first_component_is_a_host_to_the_runtime_so_it_is_refused() {
    // Found by the image_reference fuzz target: oci-client read "locaBhost/x" as
    // docker.io/locaBhost/x; the runtime pulls it from the registry "locabhost".
    for image in ["locaBhost/x", "EVIL/library/nginx:1.25", "Registry/app:1"] {
        let e = ImageRef::parse(image).expect_err(image);
        assert!(e.to_string().contains("registry host"), "{image}: {e}");
        assert!(
            !e.to_string().contains("  "),
            "one space between words: {e}"
        );
    }
    // Hosts with a domain or port may have any case; lowercase paths are Docker Hub's.
    assert_eq!(
        parse("Registry.Example:5000/app:1").normalised(),
        "Registry.Example:5000/app:1"
    );
    assert_eq!(
        parse("locabhost/x").normalised(),
        "docker.io/locabhost/x:latest"
    );
    assert_eq!(parse("localhost/x").normalised(), "localhost/x:latest");
}

#[test]
fn an_image_is_parsed_once_where_it_is_read_and_keeps_what_was_written() {
    let image: Image =
        serde_json::from_value(serde_json::json!(format!("nginx@sha256:{HEX}"))).expect("a string");
    assert_eq!(image.raw(), format!("nginx@sha256:{HEX}"));
    let parsed = image.parsed().expect("valid");
    assert_eq!(parsed.repository(), "docker.io/library/nginx");
    assert_eq!(
        image.ok().map(ImageRef::digest),
        Some(Some(&*format!("sha256:{HEX}")))
    );

    let bad = Image::new("Acme/Model:1");
    assert_eq!(bad.raw(), "Acme/Model:1");
    assert!(bad.ok().is_none());
    assert!(matches!(bad.parsed(), Err(ImageError::Invalid(_))));
    assert_eq!(Image::absent().parsed().unwrap_err(), &ImageError::Empty);
    // Equality is what was written: two spellings of one image stay two uses.
    assert_ne!(Image::new("nginx"), Image::new("docker.io/library/nginx"));
    assert_eq!(Image::new("nginx"), Image::new("nginx"));
    // Remembered parses are the parses: the same answer the second time, good or bad.
    for raw in [
        format!("ghcr.io/acme/model@sha256:{HEX}"),
        "Acme/Model:1".to_string(),
    ] {
        let (first, again) = (Image::new(raw.as_str()), Image::new(raw.as_str()));
        assert_eq!(
            first.parsed().map(ImageRef::normalised),
            again.parsed().map(ImageRef::normalised)
        );
        assert_eq!(first.parsed().err(), ImageRef::parse(&raw).err().as_ref());
    }
}
