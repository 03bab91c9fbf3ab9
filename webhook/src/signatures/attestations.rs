//! Attestation requirements of a rule: the image must carry a signed in-toto
//! attestation of a predicate type (trusted as the rule trusts signatures) whose
//! predicate satisfies a CEL policy (the expression language of Kubernetes
//! ValidatingAdmissionPolicy and Kyverno), evaluated with the `cel` crate.
//!
//! Variables: `predicate` (the Statement's predicate, as JSON), `predicateType`,
//! `subject` (`{name, digest}` of the admitted image) and `now` (a timestamp, passed in
//! so tests control time). A missing attestation is a violation (CVE-2022-35930
//! admitted images without one).

use std::time::SystemTime;

use serde_json::Value;

use super::config::AttestationConfig;

/// One compiled `attestations[]` entry.
pub struct Requirement {
    pub predicate_type: String,
    pub policy: String,
    program: cel::Program,
    /// The policy reads `now`: its verdict can flip with time alone.
    pub uses_now: bool,
}

impl Requirement {
    /// Compiles `config`; the error is the message for its `policy` field.
    pub fn compile(config: &AttestationConfig) -> Result<Self, String> {
        let program = cel::Program::compile(&config.policy)
            .map_err(|e| format!("not a CEL expression: {e}"))?;
        let uses_now = program.references().variables().contains(&"now");
        Ok(Self {
            predicate_type: config.predicate_type.clone(),
            policy: config.policy.clone(),
            program,
            uses_now,
        })
    }

    /// Whether `predicate` satisfies the policy; an evaluation error or a non-boolean
    /// result is a failure that says so.
    pub fn admits(
        &self,
        predicate: &Value,
        name: &str,
        digest: &str,
        now: SystemTime,
    ) -> Result<(), String> {
        let mut context = cel::Context::default();
        let variables = [
            ("predicate", predicate.clone()),
            ("predicateType", Value::String(self.predicate_type.clone())),
            (
                "subject",
                serde_json::json!({"name": name, "digest": digest}),
            ),
        ];
        for (variable, value) in variables {
            context
                .add_variable(variable, value)
                .map_err(|e| format!("cannot bind {variable}: {e}"))?;
        }
        let now: chrono::DateTime<chrono::Utc> = now.into();
        context
            .add_variable("now", cel::Value::Timestamp(now.fixed_offset()))
            .map_err(|e| format!("cannot bind now: {e}"))?;
        match self.program.execute(&context) {
            Ok(cel::Value::Bool(true)) => Ok(()),
            Ok(cel::Value::Bool(false)) => Err(format!("policy `{}` is false", self.policy)),
            Ok(other) => Err(format!(
                "policy `{}` gave {other:?}, not a boolean",
                self.policy
            )),
            Err(e) => Err(format!("policy `{}` failed: {e}", self.policy)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn requirement(policy: &str) -> Requirement {
        Requirement::compile(&AttestationConfig {
            predicate_type: "https://cosign.sigstore.dev/attestation/vuln/v1".into(),
            policy: policy.into(),
        })
        .unwrap()
    }

    #[test]
    fn vulnerability_scans_no_criticals_and_fresh() {
        let policy = "predicate.scanner.result.Results.all(r, !has(r.Vulnerabilities) || \
                      r.Vulnerabilities.all(v, v.Severity != 'CRITICAL')) && \
                      now - timestamp(predicate.metadata.scanFinishedOn) < duration('168h')";
        let r = requirement(policy);
        assert!(r.uses_now);
        let scan = |severity: &str, finished: &str| {
            serde_json::json!({
                "scanner": {"result": {"Results": [{"Vulnerabilities": [{"Severity": severity}]}, {}]}},
                "metadata": {"scanFinishedOn": finished},
            })
        };
        let day = Duration::from_secs(86_400);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let finished = chrono::DateTime::<chrono::Utc>::from(now - day).to_rfc3339();
        assert_eq!(
            r.admits(&scan("HIGH", &finished), "r/m", "sha256:0", now),
            Ok(())
        );
        let error = r
            .admits(&scan("CRITICAL", &finished), "r/m", "sha256:0", now)
            .unwrap_err();
        assert!(error.contains("is false"), "{error}");
        // Eight days later the same scan is stale: the verdict flips with time alone.
        assert!(r
            .admits(&scan("HIGH", &finished), "r/m", "sha256:0", now + 7 * day)
            .is_err());
    }

    #[test]
    fn slsa_provenance_from_the_right_repository() {
        let r = requirement(
            "predicate.buildDefinition.externalParameters.workflow.repository == 'https://github.com/acme/models' \
             && subject.digest.startsWith('sha256:')",
        );
        assert!(!r.uses_now);
        let provenance = |repo: &str| serde_json::json!({"buildDefinition": {"externalParameters": {"workflow": {"repository": repo}}}});
        let now = SystemTime::now();
        assert_eq!(
            r.admits(
                &provenance("https://github.com/acme/models"),
                "r/m",
                "sha256:0",
                now
            ),
            Ok(())
        );
        assert!(r
            .admits(
                &provenance("https://github.com/evil/models"),
                "r/m",
                "sha256:0",
                now
            )
            .is_err());
        // A field that is not there is an evaluation error, not a pass.
        let error = r
            .admits(&serde_json::json!({}), "r/m", "sha256:0", now)
            .unwrap_err();
        assert!(error.contains("failed"), "{error}");
    }

    #[test]
    fn bad_policies_are_refused_at_load_and_non_booleans_at_evaluation() {
        assert!(Requirement::compile(&AttestationConfig {
            predicate_type: "x".into(),
            policy: "predicate. ==".into(),
        })
        .is_err());
        let r = requirement("predicate.count");
        let error = r
            .admits(
                &serde_json::json!({"count": 3}),
                "r/m",
                "sha256:0",
                SystemTime::now(),
            )
            .unwrap_err();
        assert!(error.contains("not a boolean"), "{error}");
    }
}
