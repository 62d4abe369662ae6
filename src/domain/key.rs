//! API keys: how one is made, and what is kept of it. The key itself is shown once, when it is created;
//! only its hash is stored, computed as Unkey computes it, so that a database moved from Unkey verifies.

use base64::Engine;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::identity::{Ratelimit, RatelimitInput, replace_ratelimits};

/// Random bytes in a key when the request names no length, as in Unkey.
pub const DEFAULT_BYTE_LENGTH: usize = 16;

/// A new key's secret parts.
pub struct MadeKey {
    /// `<prefix>_<base58 of random bytes>`: the only time it exists is in the create's answer.
    pub key: String,
    /// SHA-256 of the whole key, in standard base64 with padding (44 characters).
    pub hash: String,
    /// The prefix and the first 4 characters after it, shown to tell keys apart.
    pub start: String,
}

/// A key of `byte_length` random bytes from the operating system's CSPRNG, base58-encoded (Bitcoin's
/// alphabet) after `prefix` and `_`.
pub fn make_key(prefix: Option<&str>, byte_length: usize) -> Result<MadeKey, rand::rand_core::OsError> {
    let mut random = vec![0_u8; byte_length];
    rand::rngs::OsRng.try_fill_bytes(&mut random)?;
    let encoded = bs58::encode(&random).into_string();
    let head: String = encoded.chars().take(4).collect();
    let (key, start) = match prefix {
        Some(prefix) => (format!("{prefix}_{encoded}"), format!("{prefix}_{head}")),
        None => (encoded, head),
    };
    Ok(MadeKey { hash: hash(&key), key, start })
}

/// The stored form of a key.
pub fn hash(key: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(key.as_bytes()))
}

/// A key's credits as requested and as stored: `remaining` null is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Credits {
    pub remaining: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refill: Option<Refill>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refill {
    pub interval: String,
    pub amount: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refill_day: Option<i64>,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Refill {
    /// Unkey ignores a refill day on a daily refill (a refill day is what makes a refill monthly).
    pub fn normalized(mut self) -> Self {
        if self.interval == "daily" {
            self.refill_day = None;
        }
        self
    }

    /// The latest moment at or before `now_ms` at which this refill fell due: the start (UTC) of the day for
    /// a daily refill; for a monthly one, of its day of the month, or of the month's last day when the
    /// month is shorter (a refill on the 31st comes on 30 April).
    pub fn last_due_at(&self, now_ms: i64) -> i64 {
        let today = now_ms - now_ms.rem_euclid(DAY_MS);
        let Some(refill_day) = self.refill_day.filter(|_| self.interval == "monthly") else { return today };
        let date = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(today);
        let due_in = |year: i32, month: time::Month| {
            let day = u8::try_from(refill_day).unwrap_or(1).clamp(1, time::util::days_in_month(month, year));
            let due = time::Date::from_calendar_date(year, month, day).expect("a day within its month");
            (due.midnight().assume_utc() - time::OffsetDateTime::UNIX_EPOCH).whole_milliseconds() as i64
        };
        let this_month = due_in(date.year(), date.month());
        if this_month <= today {
            return this_month;
        }
        let previous = date.month().previous();
        due_in(if previous == time::Month::December { date.year() - 1 } else { date.year() }, previous)
    }
}

impl Credits {
    /// These credits at `now_ms`, last refilled (or set) at `last_refilled_ms`: topped up to the refill's
    /// amount when a refill fell due since, as Unkey's refills set it. `true` when a refill fell due, even
    /// when it left more than its amount as it was (Unkey's refills skip those keys): it counts as made, so
    /// that spending below the amount later that day refills nothing.
    pub fn refilled(self, last_refilled_ms: i64, now_ms: i64) -> (Self, bool) {
        match &self.refill {
            Some(refill) if refill.last_due_at(now_ms) > last_refilled_ms => {
                let remaining = self.remaining.map_or(refill.amount, |remaining| remaining.max(refill.amount));
                (Self { remaining: Some(remaining), ..self }, true)
            }
            _ => (self, false),
        }
    }
}

/// A part of an update that may be left out (unchanged), null (cleared) or given.
pub type Patch<T> = Option<Option<T>>;

/// What keys.updateKey and keys.updateCredits change in a key's own fields; absent parts stay as they are.
/// The identity link is the store's part ([`KeyChanges::external_id`]), since it may create an identity.
#[derive(Debug, Clone, Default)]
pub struct KeyChanges {
    pub name: Patch<String>,
    /// JSON text of an object.
    pub meta: Patch<String>,
    /// A name links the key to the live identity holding it (created when there is none); null unlinks.
    pub external_id: Patch<String>,
    pub expires: Patch<i64>,
    pub enabled: Option<bool>,
    pub credits: Option<CreditsChange>,
    /// Replaces the key's set: a name still sent keeps its ratelimit's id.
    pub ratelimits: Option<Vec<RatelimitInput>>,
}

/// How a key's credits change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditsChange {
    /// updateKey's `credits`: null (`None`) makes the key unlimited; otherwise `remaining` null does too,
    /// and either part left out stays as it is.
    Patch(Option<CreditsPatch>),
    /// updateCredits `set`: a number keeps the refill; null makes the key unlimited and drops the refill.
    Set(Option<i64>),
    Increment(i64),
    /// Floors at 0, as Unkey's.
    Decrement(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditsPatch {
    pub remaining: Patch<i64>,
    pub refill: Patch<Refill>,
}

/// A key's own fields as stored, before and after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFields {
    pub name: Option<String>,
    pub meta: Option<String>,
    pub expires: Option<i64>,
    pub enabled: bool,
    pub credits: Option<Credits>,
    pub ratelimits: Vec<Ratelimit>,
}

/// Why a key's credits cannot change as asked; nothing is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditsRefusal {
    /// Increment or decrement of a key without a limit (Unkey's rule and message).
    Unlimited,
    /// A refill on a key whose `remaining` is unlimited: nothing to refill (createKey's rule).
    RefillWithoutRemaining,
}

impl KeyChanges {
    /// The fields once these changes apply to `current`.
    pub fn apply(&self, current: KeyFields) -> Result<KeyFields, CreditsRefusal> {
        let credits = match &self.credits {
            None => current.credits,
            Some(change) => change.apply(current.credits)?,
        };
        let ratelimits = match &self.ratelimits {
            None => current.ratelimits,
            Some(sent) => replace_ratelimits(&current.ratelimits, sent),
        };
        Ok(KeyFields {
            name: patched(current.name, &self.name),
            meta: patched(current.meta, &self.meta),
            expires: patched(current.expires, &self.expires),
            enabled: self.enabled.unwrap_or(current.enabled),
            credits,
            ratelimits,
        })
    }
}

fn patched<T: Clone>(current: Option<T>, patch: &Patch<T>) -> Option<T> {
    match patch {
        None => current,
        Some(value) => value.clone(),
    }
}

impl CreditsChange {
    /// The credits once this change applies to `current` (`None`: the key has no credits at all).
    pub fn apply(&self, current: Option<Credits>) -> Result<Option<Credits>, CreditsRefusal> {
        let remaining = current.as_ref().and_then(|credits| credits.remaining);
        let refill = current.and_then(|credits| credits.refill);
        let (remaining, refill) = match self {
            Self::Patch(None) | Self::Set(None) => (None, None),
            Self::Patch(Some(patch)) => match patch.remaining {
                Some(None) if matches!(patch.refill, Some(Some(_))) => {
                    return Err(CreditsRefusal::RefillWithoutRemaining);
                }
                Some(None) => (None, None),
                Some(Some(value)) => (Some(value), patched(refill, &patch.refill)),
                None => (remaining, patched(refill, &patch.refill)),
            },
            Self::Set(Some(value)) => (Some(*value), refill),
            Self::Increment(value) => {
                (Some(remaining.ok_or(CreditsRefusal::Unlimited)?.saturating_add(*value)), refill)
            }
            Self::Decrement(value) => {
                (Some(remaining.ok_or(CreditsRefusal::Unlimited)?.saturating_sub(*value).max(0)), refill)
            }
        };
        match (remaining, refill) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(CreditsRefusal::RefillWithoutRemaining),
            (Some(remaining), refill) => {
                Ok(Some(Credits { remaining: Some(remaining), refill: refill.map(Refill::normalized) }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_its_prefix_and_base58_and_is_stored_as_unkey_stores_it() {
        let made = make_key(Some("sk_live"), 16).expect("random bytes");
        let encoded = made.key.strip_prefix("sk_live_").expect("prefixed");
        assert!((21..=22).contains(&encoded.len()), "{encoded}");
        assert!(encoded.chars().all(|c| c.is_ascii_alphanumeric() && !"0OIl".contains(c)));
        assert_eq!(made.start, format!("sk_live_{}", &encoded[..4]));
        assert_eq!(made.hash.len(), 44);
        // SHA-256 of "abc", in standard base64.
        assert_eq!(hash("abc"), "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
        assert_ne!(make_key(None, 16).expect("random").key, make_key(None, 16).expect("random").key);
    }

    fn credits(remaining: i64, refill: Option<i64>) -> Option<Credits> {
        let refill = refill.map(|amount| Refill { interval: "daily".into(), amount, refill_day: None });
        Some(Credits { remaining: Some(remaining), refill })
    }

    /// `"YYYY-MM-DD HH:MM"` in UTC, as unix ms.
    fn at(date: &str) -> i64 {
        let number = |range: std::ops::Range<usize>| date[range].parse::<u8>().expect("digits");
        let month = time::Month::try_from(number(5..7)).expect("a month");
        let day = time::Date::from_calendar_date(date[0..4].parse().expect("a year"), month, number(8..10));
        let moment = day.expect("a day").with_hms(number(11..13), number(14..16), 0).expect("a time").assume_utc();
        (moment - time::OffsetDateTime::UNIX_EPOCH).whole_milliseconds() as i64
    }

    #[test]
    fn refills_fall_due_at_the_start_of_their_day() {
        let daily = Refill { interval: "daily".into(), amount: 5, refill_day: None };
        assert_eq!(daily.last_due_at(at("2026-12-02 14:30")), at("2026-12-02 00:00"));
        let monthly = |day| Refill { interval: "monthly".into(), amount: 5, refill_day: Some(day) };
        assert_eq!(monthly(15).last_due_at(at("2026-12-20 10:00")), at("2026-12-15 00:00"));
        assert_eq!(monthly(15).last_due_at(at("2026-12-02 10:00")), at("2026-11-15 00:00"));
        assert_eq!(monthly(31).last_due_at(at("2026-05-01 10:00")), at("2026-04-30 00:00"), "April's last day");
        assert_eq!(monthly(20).last_due_at(at("2026-01-02 10:00")), at("2025-12-20 00:00"), "across a year");
        let credits = Credits { remaining: Some(0), refill: Some(daily) };
        assert_eq!(credits.clone().refilled(at("2026-12-01 23:00"), at("2026-12-02 08:00")).0.remaining, Some(5));
        assert_eq!(credits.refilled(at("2026-12-02 01:00"), at("2026-12-02 08:00")), (credits_of(0), false));
    }

    #[test]
    fn a_refill_leaves_more_than_its_amount_as_it_is() {
        let due = |remaining| credits_of(remaining).refilled(at("2026-12-01 23:00"), at("2026-12-02 08:00"));
        assert_eq!(due(1000), (credits_of(1000), true), "above the amount: skipped, as Unkey's refills skip it");
        assert_eq!(due(5), (credits_of(5), true), "at the amount");
        assert_eq!(due(4), (credits_of(5), true), "below: set to the amount");
    }

    fn credits_of(remaining: i64) -> Credits {
        let refill = Refill { interval: "daily".into(), amount: 5, refill_day: None };
        Credits { remaining: Some(remaining), refill: Some(refill) }
    }

    #[test]
    fn credits_change_as_unkeys_update_routes_say() {
        let patch = |remaining, refill| CreditsChange::Patch(Some(CreditsPatch { remaining, refill }));
        let daily = |amount| Refill { interval: "daily".into(), amount, refill_day: Some(3) };
        // updateKey: null clears all; remaining null clears the refill too; parts left out stay.
        assert_eq!(CreditsChange::Patch(None).apply(credits(5, Some(9))), Ok(None));
        assert_eq!(patch(Some(None), None).apply(credits(5, Some(9))), Ok(None));
        assert_eq!(patch(Some(Some(7)), None).apply(credits(5, Some(9))), Ok(credits(7, Some(9))));
        assert_eq!(patch(None, Some(None)).apply(credits(5, Some(9))), Ok(credits(5, None)));
        assert_eq!(patch(None, Some(Some(daily(4)))).apply(credits(5, None)), Ok(credits(5, Some(4))));
        assert_eq!(patch(None, Some(Some(daily(4)))).apply(None), Err(CreditsRefusal::RefillWithoutRemaining));
        // updateCredits: set null clears the refill, a number keeps it; decrement floors at 0.
        assert_eq!(CreditsChange::Set(None).apply(credits(5, Some(9))), Ok(None));
        assert_eq!(CreditsChange::Set(Some(2)).apply(credits(5, Some(9))), Ok(credits(2, Some(9))));
        assert_eq!(CreditsChange::Set(Some(2)).apply(None), Ok(credits(2, None)));
        assert_eq!(CreditsChange::Increment(3).apply(credits(5, None)), Ok(credits(8, None)));
        assert_eq!(CreditsChange::Increment(i64::MAX).apply(credits(5, None)), Ok(credits(i64::MAX, None)));
        assert_eq!(CreditsChange::Decrement(9).apply(credits(5, None)), Ok(credits(0, None)));
        assert_eq!(CreditsChange::Decrement(1).apply(None), Err(CreditsRefusal::Unlimited));
        assert_eq!(CreditsChange::Increment(1).apply(None), Err(CreditsRefusal::Unlimited));
    }
}
