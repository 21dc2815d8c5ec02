//! The session secret's two uses: keyed hashes of session cookies (so that a
//! database dump holds no usable session), and sealing provider tokens and
//! sign-in secrets at rest. Nothing here decides who may sign in.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::hmac;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Keys derived from `auth.session.secret`, or random for one process's life.
pub struct SecretKeys {
    hmac: hmac::Key,
    seal: LessSafeKey,
}

impl SecretKeys {
    pub fn new(secret: Option<&SecretString>) -> anyhow::Result<SecretKeys> {
        let master: [u8; 32] = match secret {
            Some(s) => Sha256::digest(s.expose_secret().as_bytes()).into(),
            None => random_bytes(),
        };
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(master);
            h.update(label);
            h.finalize().into()
        };
        let seal = UnboundKey::new(&AES_256_GCM, &derive(b"stagedoor seal v1"))
            .map_err(|_| anyhow::anyhow!("cannot derive the sealing key"))?;
        Ok(SecretKeys {
            hmac: hmac::Key::new(hmac::HMAC_SHA256, &derive(b"stagedoor session id v1")),
            seal: LessSafeKey::new(seal),
        })
    }

    /// The database id of a session cookie value.
    pub fn session_id(&self, cookie: &str) -> String {
        hex::encode(hmac::sign(&self.hmac, cookie.as_bytes()).as_ref())
    }

    /// Encrypts with a fresh nonce: base64url(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, plain: &[u8]) -> anyhow::Result<String> {
        let nonce_bytes: [u8; 12] = random_bytes();
        let mut buf = plain.to_vec();
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::empty(),
                &mut buf,
            )
            .map_err(|_| anyhow::anyhow!("cannot seal"))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Decrypts what `seal` produced; `None` when it was tampered with or sealed by another secret.
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < 12 + aead::AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, rest) = bytes.split_at(12);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut rest = rest.to_vec();
        let plain = self
            .seal
            .open_in_place(nonce, Aad::empty(), &mut rest)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// Random bytes from the thread's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// A random URL-safe token with 256 bits of entropy.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// SHA-256 in hex, for values that are looked up but must not be stored as they are.
pub fn digest(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Compares two strings without an early exit.
pub fn same(a: &str, b: &str) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_secret() {
        let a = SecretKeys::new(Some(&SecretString::from("a".repeat(32)))).expect("keys");
        let b = SecretKeys::new(Some(&SecretString::from("b".repeat(32)))).expect("keys");
        let sealed = a.seal(b"refresh-token").expect("seal");
        assert_eq!(a.open(&sealed).as_deref(), Some(&b"refresh-token"[..]));
        assert_eq!(b.open(&sealed), None);
        let mut tampered = sealed.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(a.open(&String::from_utf8(tampered).expect("utf8")), None);
        assert_ne!(a.session_id("x"), b.session_id("x"));
        assert_eq!(a.session_id("x"), a.session_id("x"));
    }
}
