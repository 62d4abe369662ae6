//! Prefixed ULIDs (`id_01J…`): unique across nodes and, within one process, strictly increasing, so
//! ordering identities by id is ordering them by creation.

use std::sync::{LazyLock, Mutex};

use ulid::Generator;

static GENERATOR: LazyLock<Mutex<Generator>> = LazyLock::new(|| Mutex::new(Generator::new()));

pub fn new_id(prefix: &str) -> String {
    let mut generator = GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // The monotonic generator only fails after 2^80 ids in one millisecond; a fresh random ULID is then still unique.
    let ulid = generator.generate().unwrap_or_else(|_| ulid::Ulid::new());
    drop(generator);
    // Pushed, not `format!`ed: formatting cost a third of the id's 1,300 instructions, on every request.
    let mut id = String::with_capacity(prefix.len() + 1 + ulid::ULID_LEN);
    id.push_str(prefix);
    id.push('_');
    id.push_str(ulid.array_to_str(&mut [0; ulid::ULID_LEN]));
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_strictly_increasing() {
        let ids: Vec<String> = (0..1000).map(|_| new_id("id")).collect();
        assert!(ids.iter().all(|id| id.starts_with("id_") && id.len() == 29));
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
