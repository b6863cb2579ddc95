//! RTMP/RTMPS URLs: `rtmp[s]://HOST[:PORT]/APP/KEY`.
//!
//! The application is the first path segment (it may carry a query string, as YouTube's
//! backup ingest `live2?backup=1` does); the stream key is everything after the next
//! `/`, verbatim. Keys may contain `?`, `&`, `=` and `/` (Facebook, Rutube, Twitch
//! `?bandwidthtest=true`): they are never escaped or split further.

use std::fmt;
use std::str::FromStr;

/// `rtmp` or `rtmps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RtmpScheme {
    Rtmp,
    Rtmps,
}

impl RtmpScheme {
    pub fn default_port(self) -> u16 {
        match self {
            RtmpScheme::Rtmp => 1935,
            RtmpScheme::Rtmps => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RtmpScheme::Rtmp => "rtmp",
            RtmpScheme::Rtmps => "rtmps",
        }
    }
}

/// A parsed RTMP URL.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RtmpUrl {
    pub scheme: RtmpScheme,
    pub host: String,
    pub port: u16,
    /// Whether the port was written in the URL (kept for `tcUrl`).
    pub explicit_port: bool,
    pub app: String,
    /// The stream key; may be empty (listen URLs that accept any key).
    pub key: String,
}

/// Why a URL is not a usable RTMP URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("URL must start with rtmp:// or rtmps:// (got {0:?})")]
    Scheme(String),
    #[error("URL has no host")]
    NoHost,
    #[error("invalid port {0:?}")]
    Port(String),
    #[error("URL has no application (expected rtmp://HOST/APP/KEY)")]
    NoApp,
}

impl RtmpUrl {
    /// The `tcUrl` sent in `connect`: scheme, host, port if given, and app.
    pub fn tc_url(&self) -> String {
        if self.explicit_port {
            format!("{}://{}:{}/{}", self.scheme.as_str(), self.host, self.port, self.app)
        } else {
            format!("{}://{}/{}", self.scheme.as_str(), self.host, self.app)
        }
    }

    /// `host:port` for connecting.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// This URL with `{key}` in the key replaced (destination templates).
    pub fn with_key_template(&self, key: &str) -> RtmpUrl {
        let mut url = self.clone();
        url.key = self.key.replace("{key}", key);
        url
    }

    /// The URL with the key masked, safe for logs and status lines.
    pub fn redacted(&self) -> String {
        let masked = mask_secret(&self.key);
        format!("{}://{}/{}/{}", self.scheme.as_str(), self.authority(), self.app, masked)
    }
}

/// Masks a secret for display: keeps at most the first 4 characters of a long key.
pub fn mask_secret(secret: &str) -> String {
    if secret.is_empty() || secret == "{key}" {
        return secret.to_string();
    }
    let shown: String = if secret.chars().count() >= 12 { secret.chars().take(4).collect() } else { String::new() };
    format!("{shown}****")
}

impl FromStr for RtmpUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<RtmpUrl, UrlError> {
        let s = s.trim();
        let (scheme, rest) = if let Some(r) = strip_prefix_ci(s, "rtmps://") {
            (RtmpScheme::Rtmps, r)
        } else if let Some(r) = strip_prefix_ci(s, "rtmp://") {
            (RtmpScheme::Rtmp, r)
        } else {
            return Err(UrlError::Scheme(s.chars().take(16).collect()));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        // user:pass@ is not part of RTMP; drop it if present
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = split_host_port(authority)?;
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        let (app, key) = match path.find('/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (path, ""),
        };
        if app.is_empty() {
            return Err(UrlError::NoApp);
        }
        Ok(RtmpUrl {
            scheme,
            host: host.to_string(),
            port: port.unwrap_or_else(|| scheme.default_port()),
            explicit_port: port.is_some(),
            app: app.to_string(),
            key: key.to_string(),
        })
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len() && s.is_char_boundary(prefix.len()) && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), UrlError> {
    if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        let end = rest.find(']').ok_or(UrlError::NoHost)?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(parse_port(p)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(UrlError::Port(after.to_string())),
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((h, Some(parse_port(p)?))),
        None => Ok((authority, None)),
    }
}

fn parse_port(p: &str) -> Result<u16, UrlError> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(UrlError::Port(p.to_string())),
        Ok(v) => Ok(v),
    }
}

impl fmt::Display for RtmpUrl {
    /// Displays the URL with its key masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RtmpUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> RtmpUrl {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn youtube_primary_and_backup() {
        let u = parse("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop");
        assert_eq!(
            (u.host.as_str(), u.port, u.app.as_str(), u.key.as_str()),
            ("a.rtmp.youtube.com", 1935, "live2", "abcd-efgh-ijkl-mnop")
        );
        assert_eq!(u.tc_url(), "rtmp://a.rtmp.youtube.com/live2");
        let b = parse("rtmp://b.rtmp.youtube.com/live2?backup=1/abcd-efgh");
        assert_eq!((b.app.as_str(), b.key.as_str()), ("live2?backup=1", "abcd-efgh"));
        assert_eq!(b.tc_url(), "rtmp://b.rtmp.youtube.com/live2?backup=1");
    }

    #[test]
    fn keys_with_query_strings_are_kept_verbatim() {
        let fb = parse("rtmps://live-api-s.facebook.com:443/rtmp/FB-123-0-Ab?s_bl=1&s_ps=1&a=Xy/z");
        assert_eq!(fb.scheme, RtmpScheme::Rtmps);
        assert_eq!(fb.port, 443);
        assert_eq!(fb.app, "rtmp");
        assert_eq!(fb.key, "FB-123-0-Ab?s_bl=1&s_ps=1&a=Xy/z");
        assert_eq!(fb.tc_url(), "rtmps://live-api-s.facebook.com:443/rtmp");
        let rt = parse("rtmp://rtmp-lb.m9.rutube.ru/live_push/0123456789abcdef0123456789abcdef?sinfo=TOKEN&x=1");
        assert_eq!(rt.key, "0123456789abcdef0123456789abcdef?sinfo=TOKEN&x=1");
        let tw = parse("rtmp://live.twitch.tv/app/live_123_abc?bandwidthtest=true");
        assert_eq!(tw.key, "live_123_abc?bandwidthtest=true");
    }

    #[test]
    fn defaults_and_errors() {
        assert_eq!(parse("rtmps://dc4-1.rtmp.t.me/s/1:Ab").port, 443);
        assert_eq!(parse("RTMP://127.0.0.1:19350/live").key, "");
        assert_eq!(parse("rtmp://[::1]:1936/live/k").host, "::1");
        assert_eq!(parse("rtmp://[::1]:1936/live/k").authority(), "[::1]:1936");
        assert!(matches!("http://x/live/k".parse::<RtmpUrl>(), Err(UrlError::Scheme(_))));
        assert_eq!("rtmp:///live/k".parse::<RtmpUrl>(), Err(UrlError::NoHost));
        assert_eq!("rtmp://host".parse::<RtmpUrl>(), Err(UrlError::NoApp));
        assert!(matches!("rtmp://host:99999/live/k".parse::<RtmpUrl>(), Err(UrlError::Port(_))));
        assert!(matches!("rtmp://host:0/live/k".parse::<RtmpUrl>(), Err(UrlError::Port(_))));
    }

    #[test]
    fn templates_and_masking() {
        let t = parse("rtmp://127.0.0.1:1936/live/{key}");
        assert_eq!(t.with_key_template("abc").key, "abc");
        let secret = parse("rtmp://h/live/abcdefghijklmnop");
        assert_eq!(secret.to_string(), "rtmp://h:1935/live/abcd****");
        assert!(!format!("{secret:?}").contains("efgh"));
        assert_eq!(mask_secret("short"), "****");
    }
}
