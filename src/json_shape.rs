//! How many values a JSON body holds, counted before anything is built from it.
//!
//! Parsed into a `serde_json::Value`, a body costs far more memory than its bytes: each number of
//! `[0,0,0,…]` is two bytes on the wire and a 32-byte value in memory, more inside maps. Eight
//! unauthenticated 10 MB bodies of that shape took the server from 30 MB to 2.6 GB. Counting walks the
//! document with serde's `IgnoredAny`-style visitor, which allocates nothing, and stops at the first value
//! past the limit, so a body is parsed only when its tree is known to be small.

use std::cell::Cell;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Most values (objects, arrays, strings, numbers, booleans, nulls) a request body may hold. A tree of
/// that many costs at most a few MB; a 1 MiB meta of objects and strings holds far fewer.
pub const MAX_VALUES: usize = 100_000;

/// Whether `body` is long enough to hold more than [`MAX_VALUES`] values: every value but the last takes at
/// least two bytes (itself and a comma), so a shorter body need not be counted, which spares the common,
/// small request a second pass over its bytes.
pub fn may_hold_too_many_values(body: &[u8]) -> bool {
    body.len() >= 2 * MAX_VALUES
}

/// Whether `body` is JSON of at most `limit` values; `Err` names why not (not JSON, or too many values).
pub fn check(body: &[u8], limit: usize) -> Result<(), Refusal> {
    let (left, overrun) = (Cell::new(limit), Cell::new(false));
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let counted =
        Counter { left: &left, overrun: &overrun }.deserialize(&mut deserializer).and_then(|()| deserializer.end());
    match counted {
        Ok(()) => Ok(()),
        Err(_) if overrun.get() => Err(Refusal::TooManyValues),
        Err(error) => Err(Refusal::NotJson(error)),
    }
}

#[derive(Debug)]
pub enum Refusal {
    NotJson(serde_json::Error),
    TooManyValues,
}

struct Counter<'a> {
    left: &'a Cell<usize>,
    /// Set when the count went past the limit, to tell that failure from a syntax error.
    overrun: &'a Cell<bool>,
}

impl Counter<'_> {
    fn take<E: de::Error>(&self) -> Result<(), E> {
        match self.left.get() {
            0 => {
                self.overrun.set(true);
                Err(E::custom("too many values"))
            }
            left => {
                self.left.set(left - 1);
                Ok(())
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Counter<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counter<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.take()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.take()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.take()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.take()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.take()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.take()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        self.take()?;
        while items.next_element_seed(Counter { left: self.left, overrun: self.overrun })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<(), A::Error> {
        self.take()?;
        while entries.next_key::<IgnoredAny>()?.is_some() {
            entries.next_value_seed(Counter { left: self.left, overrun: self.overrun })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_counted_at_every_depth() {
        assert!(check(br#"{"a":[1,2,{"b":null}],"c":"x"}"#, 7).is_ok());
        assert!(matches!(check(br#"{"a":[1,2,{"b":null}],"c":"x"}"#, 6), Err(Refusal::TooManyValues)));
        let wide = format!("[{}0]", "0,".repeat(10_000));
        assert!(matches!(check(wide.as_bytes(), 10_001), Err(Refusal::TooManyValues)));
        assert!(check(wide.as_bytes(), 10_002).is_ok(), "10,001 numbers and their array");
    }

    #[test]
    fn the_shortest_body_with_too_many_values_is_counted() {
        let shortest = format!("[{}0]", "0,".repeat(MAX_VALUES - 1));
        assert!(matches!(check(shortest.as_bytes(), MAX_VALUES), Err(Refusal::TooManyValues)), "the array counts");
        assert!(may_hold_too_many_values(shortest.as_bytes()));
        assert!(!may_hold_too_many_values(&shortest.as_bytes()[..2 * MAX_VALUES - 1]));
    }

    #[test]
    fn what_is_not_json_is_told_apart() {
        for broken in [&b"{"[..], b"[1,]", b"{} {}", b"", b"\xff"] {
            assert!(matches!(check(broken, 10), Err(Refusal::NotJson(_))), "{broken:?}");
        }
    }
}
