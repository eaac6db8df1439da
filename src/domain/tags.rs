//! Tag keys in queries: which keys a spend or budget filter may name (`valid_tag_key`) and,
//! for an error message, why one cannot (`tag_key_problem`). A key is spliced into a JSON
//! path on SQLite, so quotes, backslashes and control characters are refused.
use super::limits;
use super::quote::quote;

/// Tag keys usable in queries: no quotes or control characters.
pub fn valid_tag_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= limits::TAG_KEY.max_bytes
        && !k.chars().any(|c| c == '"' || c == '\\' || c.is_control())
}

/// Why `k` cannot be a tag key in a query, if it cannot (see [`valid_tag_key`]).
pub fn tag_key_problem(k: &str) -> Option<String> {
    if k.is_empty() {
        return Some("the tag key is empty".into());
    }
    if k.len() > limits::TAG_KEY.max_bytes {
        return Some(format!(
            "the tag key is {} bytes, more than {}",
            k.len(),
            limits::TAG_KEY.max_bytes
        ));
    }
    k.chars()
        .find(|c| *c == '"' || *c == '\\' || c.is_control())
        .map(|c| {
            format!(
                "the tag key {} contains {c:?}; quotes, backslashes and control characters cannot be queried",
                quote(k)
            )
        })
}
