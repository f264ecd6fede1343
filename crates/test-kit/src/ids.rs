//! Event ids as the gateway and the reference upstream write them: `<epoch>-<seq>`.

/// The sequence number of an id `<epoch>-<seq>`; panics on any other id.
pub fn seq(id: &str) -> u64 {
    id.rsplit_once('-')
        .and_then(|(_, seq)| seq.parse().ok())
        .unwrap_or_else(|| panic!("not an id <epoch>-<seq>: {id:?}"))
}
