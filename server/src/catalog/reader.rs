//! Reads location contents: local files and http(s) URLs on allow-listed hosts.
//!
//! A URL is fetched only when `backend.reading.allow` lists its host (and path).
//! Redirects are followed by hand, each hop checked again, and no hop may reach a
//! private, loopback or link-local address unless its host is listed exactly.
//! Name resolution goes through the same check, so a DNS answer cannot smuggle a
//! private address in. Reads have a timeout and a size limit.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::config::ReadingAllow;

/// Largest location file read, in bytes.
pub const MAX_READ_BYTES: usize = 16 * 1024 * 1024;
const MAX_REDIRECTS: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0} is not allowed by backend.reading.allow")]
    NotAllowed(String),
    #[error("{0} resolves to a private, loopback or link-local address, which is not allowed")]
    PrivateAddress(String),
    #[error("{0} exceeds the size limit of {MAX_READ_BYTES} bytes")]
    TooLarge(String),
    #[error("{0} was not found")]
    NotFound(String),
    #[error("{0}: {1}")]
    Failed(String, String),
}

/// One allow-list entry, parsed.
#[derive(Debug, Clone)]
struct AllowEntry {
    host: String,
    wildcard: bool,
    port: Option<u16>,
    paths: Option<Vec<String>>,
}

/// Reads files and allow-listed URLs.
#[derive(Clone)]
pub struct Reader {
    allow: Arc<Vec<AllowEntry>>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("allow", &self.allow)
            .finish()
    }
}

impl Reader {
    pub fn new(allow: &[ReadingAllow]) -> anyhow::Result<Reader> {
        let allow: Vec<AllowEntry> = allow
            .iter()
            .map(|a| {
                let (host, port) = split_host_port(a.host.trim());
                let (host, wildcard) = match host.strip_prefix("*.") {
                    Some(rest) => (rest.to_string(), true),
                    None => (host.to_string(), false),
                };
                AllowEntry {
                    host: host.to_lowercase(),
                    wildcard,
                    port,
                    paths: a.paths.clone(),
                }
            })
            .collect();
        let allow = Arc::new(allow);
        let resolver = Arc::new(CheckedResolver {
            allow: allow.clone(),
        });
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .dns_resolver(resolver)
            .user_agent(concat!("stagedoor/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Reader { allow, client })
    }

    /// Reads a local file, refusing anything larger than the limit.
    pub async fn read_file(&self, path: &Path) -> Result<Vec<u8>, ReadError> {
        let name = path.display().to_string();
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ReadError::NotFound(name.clone()),
                _ => ReadError::Failed(name.clone(), e.to_string()),
            })?;
        if meta.len() > MAX_READ_BYTES as u64 {
            return Err(ReadError::TooLarge(name));
        }
        if !meta.is_file() {
            return Err(ReadError::Failed(name, "not a regular file".into()));
        }
        tokio::fs::read(path)
            .await
            .map_err(|e| ReadError::Failed(name, e.to_string()))
    }

    /// True when the URL may be fetched at all (before any network access).
    pub fn check_url(&self, raw: &str) -> Result<url::Url, ReadError> {
        let url = url::Url::parse(raw).map_err(|e| ReadError::Failed(raw.into(), e.to_string()))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(ReadError::NotAllowed(raw.into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ReadError::NotAllowed(raw.into()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| ReadError::NotAllowed(raw.into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_lowercase();
        let port = url.port_or_known_default();
        let allowed = self.allow.iter().any(|a| {
            let host_ok = if a.wildcard {
                host.ends_with(&format!(".{}", a.host))
            } else {
                host == a.host
            };
            let port_ok = match a.port {
                Some(p) => Some(p) == port,
                None => url.port().is_none(),
            };
            let path_ok = match &a.paths {
                None => true,
                Some(paths) => paths.iter().any(|p| url.path().starts_with(p.as_str())),
            };
            host_ok && port_ok && path_ok
        });
        if !allowed {
            return Err(ReadError::NotAllowed(raw.into()));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            if !address_allowed(ip, is_listed_exactly(&self.allow, &host)) {
                return Err(ReadError::PrivateAddress(raw.into()));
            }
        }
        Ok(url)
    }

    /// Fetches a URL, checking the allow-list on every hop.
    pub async fn read_url(&self, raw: &str) -> Result<Vec<u8>, ReadError> {
        let mut url = self.check_url(raw)?;
        for _ in 0..=MAX_REDIRECTS {
            let shown = url.to_string();
            let res = self.client.get(url.clone()).send().await.map_err(|e| {
                if is_private_error(&e) {
                    ReadError::PrivateAddress(shown.clone())
                } else if e.is_timeout() {
                    ReadError::Failed(shown.clone(), "timed out".into())
                } else {
                    ReadError::Failed(shown.clone(), root_cause(&e))
                }
            })?;
            let status = res.status();
            if status.is_redirection() {
                let location = res
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| {
                        ReadError::Failed(shown.clone(), "redirect without a location".into())
                    })?;
                let next = url
                    .join(location)
                    .map_err(|e| ReadError::Failed(shown.clone(), e.to_string()))?;
                url = self.check_url(next.as_str())?;
                continue;
            }
            if status == reqwest::StatusCode::NOT_FOUND {
                return Err(ReadError::NotFound(shown));
            }
            if !status.is_success() {
                return Err(ReadError::Failed(shown, format!("HTTP status {status}")));
            }
            if res
                .content_length()
                .is_some_and(|n| n > MAX_READ_BYTES as u64)
            {
                return Err(ReadError::TooLarge(shown));
            }
            let mut body = Vec::new();
            let mut stream = res.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| ReadError::Failed(shown.clone(), root_cause(&e)))?;
                if body.len() + chunk.len() > MAX_READ_BYTES {
                    return Err(ReadError::TooLarge(shown));
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(body);
        }
        Err(ReadError::Failed(raw.into(), "too many redirects".into()))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn is_private_error(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.to_string().contains(PRIVATE_MARKER) {
            return true;
        }
        cur = err.source();
    }
    false
}

const PRIVATE_MARKER: &str = "refusing a private address";

fn split_host_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once("]:") {
            return (h, p.parse().ok());
        }
        return (rest.trim_end_matches(']'), None);
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (s, None),
        },
        _ => (s, None),
    }
}

fn is_listed_exactly(allow: &[AllowEntry], host: &str) -> bool {
    allow.iter().any(|a| !a.wildcard && a.host == host)
}

/// Public addresses are always fine. Loopback and private ranges only for hosts
/// listed exactly; link-local (cloud metadata), unspecified and multicast never.
fn address_allowed(ip: IpAddr, listed_exactly: bool) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() {
                return false;
            }
            let o = v4.octets();
            let shared = o[0] == 100 && (64..128).contains(&o[1]);
            let private = v4.is_loopback() || v4.is_private() || shared || o[0] == 0;
            !private || listed_exactly
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            if v6.is_unspecified() || v6.is_multicast() || (seg[0] & 0xffc0) == 0xfe80 {
                return false;
            }
            let private = v6.is_loopback() || (seg[0] & 0xfe00) == 0xfc00;
            !private || listed_exactly
        }
    }
}

/// Resolves names and drops the request if any answer is not allowed.
struct CheckedResolver {
    allow: Arc<Vec<AllowEntry>>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_lowercase();
        let listed = is_listed_exactly(&self.allow, &host);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() || addrs.iter().any(|a| !address_allowed(a.ip(), listed)) {
                let err: Box<dyn std::error::Error + Send + Sync> =
                    format!("{PRIVATE_MARKER} for {host}").into();
                return Err(err);
            }
            let iter: Box<dyn Iterator<Item = SocketAddr> + Send> = Box::new(addrs.into_iter());
            Ok(iter)
        })
    }
}

/// Resolves a nested location target against the location that names it.
pub fn resolve_target(kind: &str, base: &str, target: &str) -> Result<String, String> {
    match kind {
        "file" => {
            let p = Path::new(target);
            if p.is_absolute() {
                Ok(target.to_string())
            } else {
                let dir = Path::new(base)
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                Ok(normalize(&dir.join(p)).display().to_string())
            }
        }
        "url" => url::Url::parse(base)
            .and_then(|b| b.join(target))
            .map(|u| u.to_string())
            .map_err(|e| format!("cannot resolve \"{target}\" against {base}: {e}")),
        other => Err(format!("location type \"{other}\" is not supported")),
    }
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(hosts: &[&str]) -> Reader {
        Reader::new(
            &hosts
                .iter()
                .map(|h| ReadingAllow {
                    host: h.to_string(),
                    paths: None,
                })
                .collect::<Vec<_>>(),
        )
        .expect("reader")
    }

    #[test]
    fn allow_list() {
        let r = reader(&["example.com", "*.corp.example", "127.0.0.1:8080"]);
        assert!(r.check_url("https://example.com/a.yaml").is_ok());
        assert!(r.check_url("https://evil.com/a.yaml").is_err());
        assert!(r.check_url("https://git.corp.example/a").is_ok());
        assert!(r.check_url("https://corp.example/a").is_err());
        assert!(r.check_url("http://127.0.0.1:8080/a").is_ok());
        assert!(r.check_url("http://127.0.0.1:8081/a").is_err());
        assert!(r.check_url("file:///etc/passwd").is_err());
        assert!(r.check_url("https://user:pw@example.com/").is_err());
    }

    #[test]
    fn address_classes() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(address_allowed(ip("93.184.216.34"), false));
        assert!(!address_allowed(ip("169.254.169.254"), true));
        assert!(!address_allowed(ip("10.0.0.1"), false));
        assert!(address_allowed(ip("127.0.0.1"), true));
        assert!(!address_allowed(ip("127.0.0.1"), false));
        assert!(!address_allowed(ip("::ffff:169.254.169.254"), true));
        assert!(!address_allowed(ip("fe80::1"), true));
    }

    #[test]
    fn nested_targets() {
        assert_eq!(
            resolve_target("file", "/a/b/all.yaml", "../c/x.yaml").expect("ok"),
            "/a/c/x.yaml"
        );
        assert_eq!(
            resolve_target("url", "https://h/r/all.yaml", "./x.yaml").expect("ok"),
            "https://h/r/x.yaml"
        );
    }
}
