//! Which rules apply to an image: globs over the normalised reference.
//!
//! Matching uses the runtime's normal form (`nginx` is `docker.io/library/nginx`, ports
//! kept), without tag or digest, with `*` stopping at `/` so that
//! `registry.example.com/models/**` never matches `registry.example.com.evil.io/models/x`.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use oci_client::Reference;

use super::SignatureError;

/// `registry/repository` of a reference as the container runtime resolves it.
pub fn normalised_name(image: &Reference) -> String {
    format!("{}/{}", image.registry(), image.repository())
}

/// Compiled `images` globs of every rule.
#[derive(Debug)]
pub struct RuleMatcher {
    sets: Vec<GlobSet>,
}

fn compile(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .case_insensitive(false)
        .build()
}

impl RuleMatcher {
    pub fn new<'a>(rules: impl IntoIterator<Item = &'a [String]>) -> Result<Self, SignatureError> {
        let mut sets = Vec::new();
        for (i, images) in rules.into_iter().enumerate() {
            let mut builder = GlobSetBuilder::new();
            for (j, pattern) in images.iter().enumerate() {
                let glob = compile(pattern).map_err(|e| SignatureError::Config {
                    field: format!("signatures.rules[{i}].images[{j}]"),
                    message: format!("invalid glob `{pattern}`: {e}"),
                })?;
                builder.add(glob);
            }
            let set = builder.build().map_err(|e| SignatureError::Config {
                field: format!("signatures.rules[{i}].images"),
                message: e.to_string(),
            })?;
            sets.push(set);
        }
        Ok(Self { sets })
    }

    /// Indexes of the rules whose globs match `name` (a [`normalised_name`]).
    pub fn matching(&self, name: &str) -> Vec<usize> {
        self.sets
            .iter()
            .enumerate()
            .filter(|(_, set)| set.is_match(name))
            .map(|(i, _)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> String {
        normalised_name(&s.parse::<Reference>().expect("valid reference"))
    }

    fn matcher(globs: &[&[&str]]) -> RuleMatcher {
        let owned: Vec<Vec<String>> = globs
            .iter()
            .map(|g| g.iter().map(|s| s.to_string()).collect())
            .collect();
        RuleMatcher::new(owned.iter().map(|v| v.as_slice())).expect("compiles")
    }

    #[test]
    fn docker_hub_short_names_are_normalised() {
        assert_eq!(name("nginx"), "docker.io/library/nginx");
        let pinned = format!("nginx:1.25@sha256:{}", "a".repeat(64));
        assert_eq!(name(&pinned), "docker.io/library/nginx");
        assert_eq!(name("user/app:v1"), "docker.io/user/app");
        assert_eq!(
            name("localhost:5000/models/a:v1"),
            "localhost:5000/models/a"
        );
    }

    #[test]
    fn registry_boundaries_hold() {
        let m = matcher(&[&["registry.example.com/models/**"]]);
        assert_eq!(
            m.matching(&name("registry.example.com/models/llm/v2:1")),
            vec![0]
        );
        assert!(m
            .matching(&name("registry.example.com.evil.io/models/x"))
            .is_empty());
        assert!(m
            .matching(&name("registry.example.com:5000/models/x"))
            .is_empty());
        assert!(m
            .matching(&name("evil.io/registry.example.com/models/x"))
            .is_empty());
    }

    #[test]
    fn single_star_stops_at_slash() {
        let m = matcher(&[&["docker.io/library/*"], &["127.0.0.1:*/**"]]);
        assert_eq!(m.matching(&name("nginx")), vec![0]);
        assert!(m.matching(&name("docker.io/library/a/b")).is_empty());
        assert_eq!(m.matching(&name("127.0.0.1:5000/m/x")), vec![1]);
    }

    #[test]
    fn every_matching_rule_is_returned() {
        let m = matcher(&[&["a.io/**"], &["b.io/**"], &["a.io/x"]]);
        assert_eq!(m.matching("a.io/x"), vec![0, 2]);
    }

    #[test]
    fn bad_glob_names_the_field() {
        let owned = [vec!["a.io/[x".to_string()]];
        let err = RuleMatcher::new(owned.iter().map(|v| v.as_slice()))
            .expect_err("unclosed class")
            .to_string();
        assert!(err.contains("signatures.rules[0].images[0]"), "{err}");
    }
}
