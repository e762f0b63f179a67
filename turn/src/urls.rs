//! ICE server URL helpers (RFC 7065 `turn:` / `turns:` URIs).

/// TURN URLs for a server reachable at `host`: `turn:host:udp_port` (UDP; clients default to
/// UDP when no transport is given), `turn:host:tcp_port?transport=tcp` and `turns:host:tls_port`
/// (TLS over TCP) when those ports are configured. IPv6 literals are bracketed.
pub fn turn_urls(
    host: &str,
    udp_port: u16,
    tcp_port: Option<u16>,
    tls_port: Option<u16>,
) -> Vec<String> {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let mut urls = vec![format!("turn:{host}:{udp_port}")];
    if let Some(p) = tcp_port {
        urls.push(format!("turn:{host}:{p}?transport=tcp"));
    }
    if let Some(p) = tls_port {
        urls.push(format!("turns:{host}:{p}"));
    }
    urls
}

/// `stun:host:port` (a TURN server answers STUN Binding requests too).
pub fn stun_url(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("stun:[{host}]:{port}")
    } else {
        format!("stun:{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            turn_urls("turn.example.org", 3478, Some(443), Some(443)),
            vec![
                "turn:turn.example.org:3478",
                "turn:turn.example.org:443?transport=tcp",
                "turns:turn.example.org:443",
            ]
        );
        assert_eq!(
            turn_urls("2001:db8::1", 3478, None, None),
            vec!["turn:[2001:db8::1]:3478"]
        );
        assert_eq!(stun_url("203.0.113.5", 3478), "stun:203.0.113.5:3478");
    }
}
