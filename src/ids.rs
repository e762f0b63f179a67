//! Identifiers: a prefix plus 12 random base62 characters (`PA_`, `TR_`, `RM_` follow LiveKit's prefixes).

use rand::distributions::Alphanumeric;
use rand::Rng;

pub fn new_id(prefix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + 12);
    s.push_str(prefix);
    s.extend(
        rand::thread_rng()
            .sample_iter(Alphanumeric)
            .take(12)
            .map(char::from),
    );
    s
}
