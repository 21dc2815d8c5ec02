//! Removes secrets from everything a task shows: log lines, event bodies,
//! outputs and dry-run results.
//!
//! It knows each secret as sent and in the forms it commonly takes on the way
//! out (JSON-escaped, base64, URL-encoded, upper and lower case), and every
//! string the template engine reports as derived from a secret, whatever
//! filters produced it.

use base64::Engine as _;
use serde_json::Value;

/// Secrets shorter than this are not searched for: they would blank out
/// ordinary text, and carry too little to be worth guessing.
const MIN_LEN: usize = 2;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Adds a secret value and its usual encodings.
    pub fn add_secret(&mut self, secret: &str) {
        let b64 = base64::engine::general_purpose::STANDARD;
        let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let json = serde_json::to_string(secret).unwrap_or_default();
        let forms = [
            secret.to_string(),
            json.trim_matches('"').to_string(),
            b64.encode(secret),
            b64.encode(secret).trim_end_matches('=').to_string(),
            b64url.encode(secret),
            url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
            secret.to_uppercase(),
            secret.to_lowercase(),
        ];
        for f in forms {
            self.add_fragment(&f);
        }
    }

    /// Adds a string known to be derived from a secret.
    pub fn add_fragment(&mut self, fragment: &str) {
        if fragment.trim().chars().count() < MIN_LEN || self.needles.iter().any(|n| n == fragment) {
            return;
        }
        self.needles.push(fragment.to_string());
        // Longest first, so that a secret inside a longer derived string goes with it.
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), "***");
            }
        }
        out
    }

    /// Redacts every string (and key) in a JSON value.
    pub fn value(&self, v: &Value) -> Value {
        if self.needles.is_empty() {
            return v.clone();
        }
        match v {
            Value::String(s) => Value::String(self.text(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.value(x)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (self.text(k), self.value(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_and_their_encodings_are_removed() {
        let mut r = Redactor::new();
        r.add_secret("s3cr\"et/+");
        let b64 = base64::engine::general_purpose::STANDARD.encode("s3cr\"et/+");
        let line = format!("a s3cr\"et/+ b {b64} c S3CR\"ET/+ d s3cr\\\"et/+ e s3cr%22et%2F%2B");
        let out = r.text(&line);
        assert!(!out.contains("s3cr"), "{out}");
        assert!(!out.contains("S3CR"), "{out}");
        assert!(!out.contains(&b64), "{out}");
        assert_eq!(out.matches("***").count(), 5, "{out}");
        let v = r.value(&json!({"k": ["x s3cr\"et/+"], "s3cr\"et/+": 1}));
        assert_eq!(v, json!({"k": ["x ***"], "***": 1}));
    }

    #[test]
    fn derived_fragments_are_removed_and_tiny_ones_ignored() {
        let mut r = Redactor::new();
        r.add_fragment("Bearer-XYZ-123");
        r.add_fragment("a");
        assert_eq!(r.text("header Bearer-XYZ-123 a"), "header *** a");
    }
}
