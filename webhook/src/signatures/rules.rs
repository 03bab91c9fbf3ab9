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

/// Compiled `images` globs of every rule, in one set: globset matches them all in one
/// pass (literal prefixes through Aho-Corasick), so an image's cost grows far slower
/// than the rule count (one set per rule cost 0.6 µs per rule and image: 1000 rules
/// doubled a review, BENCHMARKS.md).
#[derive(Debug)]
pub struct RuleMatcher {
    set: GlobSet,
    /// The rule of each glob in `set`, by the glob's index.
    rule_of: Vec<usize>,
}

fn compile(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .case_insensitive(false)
        .build()
}

impl RuleMatcher {
    pub fn new<'a>(rules: impl IntoIterator<Item = &'a [String]>) -> Result<Self, SignatureError> {
        let mut builder = GlobSetBuilder::new();
        let mut rule_of = Vec::new();
        for (i, images) in rules.into_iter().enumerate() {
            for (j, pattern) in images.iter().enumerate() {
                let glob = compile(pattern).map_err(|e| SignatureError::Config {
                    field: format!("signatures.rules[{i}].images[{j}]"),
                    message: format!("invalid glob `{pattern}`: {e}"),
                })?;
                builder.add(glob);
                rule_of.push(i);
            }
        }
        let set = builder.build().map_err(|e| SignatureError::Config {
            field: "signatures.rules[*].images".to_string(),
            message: e.to_string(),
        })?;
        Ok(Self { set, rule_of })
    }

    /// Indexes of the rules whose globs match `name` (a [`normalised_name`]), in rule
    /// order, each once.
    pub fn matching(&self, name: &str) -> Vec<usize> {
        let mut rules: Vec<usize> = self
            .set
            .matches(name)
            .into_iter()
            .map(|glob| self.rule_of[glob])
            .collect();
        rules.sort_unstable();
        rules.dedup();
        rules
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
        // A rule two of whose globs match is returned once.
        let m = matcher(&[&["a.io/**", "a.io/x"], &["c.io/**"], &["a.io/*"]]);
        assert_eq!(m.matching("a.io/x"), vec![0, 2]);
    }

    #[test]
    fn one_set_of_many_rules_matches_as_each_rule_alone_does() {
        // 600 rules of the shapes users write, against names that hit, nearly hit and
        // miss: the combined set must agree with each rule's globs compiled on its own.
        let rules: Vec<Vec<String>> = (0..200)
            .flat_map(|i| {
                [
                    vec![format!("registry.example/team-{i}/**")],
                    vec![
                        format!("ghcr.io/org-{i}/*"),
                        format!("ghcr.io/org-{i}/x/**"),
                    ],
                    vec![format!("10.0.0.{}:5000/**", i % 7)],
                ]
            })
            .collect();
        let m = RuleMatcher::new(rules.iter().map(|v| v.as_slice())).expect("compiles");
        let names = [
            "registry.example/team-7/model",
            "registry.example/team-70/a/b",
            "registry.example/team-7",
            "ghcr.io/org-3/m",
            "ghcr.io/org-3/x/y/z",
            "ghcr.io/org-3/m/n",
            "10.0.0.3:5000/a",
            "10.0.0.3:50000/a",
            "docker.io/library/nginx",
        ];
        let alone: Vec<Vec<globset::GlobMatcher>> = rules
            .iter()
            .map(|globs| {
                globs
                    .iter()
                    .map(|g| compile(g).expect("glob").compile_matcher())
                    .collect()
            })
            .collect();
        for name in names {
            let alone: Vec<usize> = alone
                .iter()
                .enumerate()
                .filter(|(_, globs)| globs.iter().any(|g| g.is_match(name)))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(m.matching(name), alone, "{name}");
        }
        assert_eq!(
            m.matching("10.0.0.3:5000/a").len(),
            29,
            "rules 3, 10, 17, …: i % 7 == 3"
        );
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
