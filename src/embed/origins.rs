//! Allowed origins of a public key: parsing what an account configures and matching a request's
//! `Origin` header against it. Pure.
//!
//! An entry is `scheme://host[:port]` (http or https, no path), or a wildcard subdomain
//! `https://*.example.com[:port]` that matches any subdomain (`a.example.com`, `b.a.example.com`)
//! but not `example.com` itself. Hosts compare case-insensitively; default ports (80, 443) are
//! dropped, as browsers drop them from `Origin`.

/// Normalize an allowed-origin entry, or say what is wrong with it.
pub fn normalize(entry: &str) -> Result<String, String> {
    let e = entry.trim();
    let (scheme, rest) = e
        .split_once("://")
        .ok_or_else(|| format!("origin `{e}` must look like https://example.com"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("origin `{e}`: the scheme must be http or https"));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "origin `{e}` must be scheme://host[:port] with no path, query or credentials"
        ));
    }
    let (host, port) = split_port(rest).ok_or_else(|| format!("origin `{e}`: invalid port"))?;
    let host = host.to_ascii_lowercase();
    let bare = host.strip_prefix("*.").unwrap_or(&host);
    if bare.is_empty()
        || bare.contains('*')
        || !bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
    {
        return Err(format!("origin `{e}`: invalid host"));
    }
    Ok(join(&scheme, &host, port))
}

fn split_port(hostport: &str) -> Option<(&str, Option<u16>)> {
    // IPv6 literal: [::1]:8080
    if let Some(end) = hostport.find(']') {
        let (h, tail) = hostport.split_at(end + 1);
        return match tail.strip_prefix(':') {
            Some(p) => p.parse().ok().map(|p| (h, Some(p))),
            None if tail.is_empty() => Some((h, None)),
            None => None,
        };
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => p.parse().ok().map(|p| (h, Some(p))),
        None => Some((hostport, None)),
    }
}

fn join(scheme: &str, host: &str, port: Option<u16>) -> String {
    let default = if scheme == "https" { 443 } else { 80 };
    match port {
        Some(p) if p != default => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    }
}

/// Whether the request origin `origin` is one of `allowed` (normalized entries).
pub fn allowed(origin: &str, allowed: &[String]) -> bool {
    let Ok(origin) = normalize(origin) else {
        return false;
    };
    if origin.contains("://*.") {
        return false; // a wildcard is a pattern, never a request's origin
    }
    allowed.iter().any(|a| matches(&origin, a))
}

fn matches(origin: &str, pattern: &str) -> bool {
    if origin == pattern {
        return true;
    }
    let Some((scheme, rest)) = pattern.split_once("://*.") else {
        return false;
    };
    let Some(o_rest) = origin
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
    else {
        return false;
    };
    // Same port (or none) on both sides: compare the suffix including the port.
    o_rest.len() > rest.len() + 1
        && o_rest.ends_with(rest)
        && o_rest.as_bytes()[o_rest.len() - rest.len() - 1] == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_normalized_or_refused() {
        assert_eq!(
            normalize("https://Example.COM/").unwrap(),
            "https://example.com"
        );
        assert_eq!(
            normalize("https://example.com:443").unwrap(),
            "https://example.com"
        );
        assert_eq!(
            normalize("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        assert_eq!(normalize("http://[::1]:8080").unwrap(), "http://[::1]:8080");
        assert_eq!(
            normalize("https://*.example.com").unwrap(),
            "https://*.example.com"
        );
        for bad in [
            "example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://user@example.com",
            "https://",
            "https://exa*mple.com",
            "https://example.com:99999",
            "https://ex ample.com",
        ] {
            assert!(normalize(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn request_origins_match_exact_entries_and_wildcard_subdomains() {
        let list: Vec<String> = [
            "https://shop.example",
            "https://*.example.com",
            "http://localhost:5173",
        ]
        .iter()
        .map(|e| normalize(e).unwrap())
        .collect();
        assert!(allowed("https://shop.example", &list));
        assert!(allowed("https://SHOP.example", &list));
        assert!(allowed("https://a.example.com", &list));
        assert!(allowed("https://b.a.example.com", &list));
        assert!(allowed("http://localhost:5173", &list));
        assert!(
            !allowed("https://example.com", &list),
            "wildcard matches subdomains only"
        );
        assert!(!allowed("http://a.example.com", &list), "scheme differs");
        assert!(
            !allowed("https://a.example.com:8443", &list),
            "port differs"
        );
        assert!(!allowed("https://evilexample.com", &list));
        assert!(!allowed("https://shop.example.evil", &list));
        assert!(!allowed("http://localhost:5174", &list));
        assert!(!allowed("null", &list));
        assert!(!allowed("https://*.example.com", &list));
    }
}
