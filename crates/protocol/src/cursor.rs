//! The cursor: where a client is in a channel's stream, as `(epoch, seq)`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A position in a channel's stream.
///
/// `seq` is the last event the client has; `epoch` names the life of the
/// channel's history, so that a cursor from before a loss of history is
/// recognised instead of silently skipping events.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The life of the channel's history this cursor belongs to.
    pub epoch: String,
    /// The last event seen; 0 before the first event.
    pub seq: u64,
}

/// Why a string is not a cursor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a cursor looks like \"epoch:seq\", as the server sent it")]
pub struct CursorParseError;

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.seq)
    }
}

impl FromStr for Cursor {
    type Err = CursorParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (epoch, seq) = text.rsplit_once(':').ok_or(CursorParseError)?;
        let epoch_is_valid = !epoch.is_empty()
            && epoch.len() <= 32
            && epoch.bytes().all(|byte| byte.is_ascii_alphanumeric());
        if !epoch_is_valid {
            return Err(CursorParseError);
        }
        // Only the digits the server writes: `u64::from_str` would also
        // take `+1` and `01`, which print as another cursor.
        let seq_is_canonical =
            seq.bytes().all(|byte| byte.is_ascii_digit()) && (seq == "0" || !seq.starts_with('0'));
        if !seq_is_canonical {
            return Err(CursorParseError);
        }
        let seq = seq.parse().map_err(|_| CursorParseError)?;
        Ok(Cursor {
            epoch: epoch.to_owned(),
            seq,
        })
    }
}

impl Serialize for Cursor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Not through `Display`: a client encodes its cursor with every
        // poll, and `fmt`'s machinery, which serde_json escapes piece by
        // piece, showed in the bench's profile. The tests check that both
        // write the same text.
        let mut digits = itoa::Buffer::new();
        let seq = digits.format(self.seq);
        let mut text = String::with_capacity(self.epoch.len() + 1 + seq.len());
        text.push_str(&self.epoch);
        text.push(':');
        text.push_str(seq);
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<(&str, u64)>) {
        let parsed = text.parse::<Cursor>().ok();
        let expected = expected.map(|(epoch, seq)| Cursor {
            epoch: epoch.to_owned(),
            seq,
        });
        assert_eq!(parsed, expected, "{text:?}");
        if let Some(cursor) = parsed {
            assert_eq!(cursor.to_string(), text);
            let json = serde_json::to_string(&cursor).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Cursor>(&json).unwrap(), cursor);
        }
    }

    #[test]
    fn parses_what_it_prints_and_nothing_else() {
        check("k3x9a1:41", Some(("k3x9a1", 41)));
        check("a:0", Some(("a", 0)));
        check(":41", None);
        check("abc", None);
        check("abc:", None);
        check("abc:-1", None);
        check("ab-c:1", None);
        check("abc:18446744073709551616", None);
        check("abc:18446744073709551615", Some(("abc", u64::MAX)));
        // Found by the fuzz target `values`: these printed as `de:0`.
        check("de:00", None);
        check("de:01", None);
        check("de:+1", None);
        check("de: 1", None);
    }
}
