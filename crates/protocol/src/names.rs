//! Checked values: channel names, people's names, colors and send ids.
//!
//! Each is a newtype that can only be built through `parse`, so code that
//! holds one knows it obeys the rules of `docs/protocol.md`.

use std::fmt;

/// A value that breaks the protocol's rules, with a sentence saying which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    /// A channel name.
    #[error("channel names are 1-32 characters of a-z, 0-9, _ and -")]
    Channel,
    /// A person's name.
    #[error("names are 1-24 characters of letters, digits, _, - and .")]
    Name,
    /// A color that is not `rrggbb`.
    #[error("colors are six hex digits, like /color 66ccff")]
    ColorFormat,
    /// A color too dark to read on the black chat box.
    #[error("the color {0} is too dark to read on black; try a lighter one, like 66ccff")]
    ColorTooDark(String),
    /// A send id.
    #[error("ids are 1-64 characters of letters, digits, _ and -")]
    Id,
}

fn is_made_of(text: &str, max_len: usize, allowed: impl Fn(u8) -> bool) -> bool {
    !text.is_empty() && text.len() <= max_len && text.bytes().all(allowed)
}

/// A channel's name: lowercase, 1–32 characters of `a-z 0-9 _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(String);

impl ChannelName {
    /// Checks a channel name, lowercasing it first.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let lower = text.trim().to_ascii_lowercase();
        let allowed = |byte: u8| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_' || byte == b'-'
        };
        if is_made_of(&lower, 32, allowed) {
            Ok(ChannelName(lower))
        } else {
            Err(InvalidValue::Channel)
        }
    }

    /// The default channel, `lobby`.
    pub fn default_channel() -> Self {
        ChannelName(crate::DEFAULT_CHANNEL.to_owned())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A person's name: 1–24 characters of `A-Z a-z 0-9 _ - .`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name(String);

impl Name {
    /// Checks a name.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let text = text.trim();
        let allowed = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.');
        if is_made_of(text, 24, allowed) {
            Ok(Name(text.to_owned()))
        } else {
            Err(InvalidValue::Name)
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as names are compared for uniqueness: ignoring case.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// A color, `rrggbb` in lowercase, light enough to read on black.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Color([u8; 3]);

impl Color {
    /// The least relative luminance a color needs: a contrast of 4.5:1 on
    /// black, the WCAG level for normal text.
    const MIN_LUMINANCE: f64 = 0.175;

    /// Checks a color written as `rrggbb` (a leading `#` is allowed).
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let text = text.trim();
        let hex = text.strip_prefix('#').unwrap_or(text);
        if hex.len() != 6 || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(InvalidValue::ColorFormat);
        }
        let channel = |at: usize| u8::from_str_radix(&hex[at..at + 2], 16).expect("checked hex");
        let color = Color([channel(0), channel(2), channel(4)]);
        if color.luminance() < Self::MIN_LUMINANCE {
            return Err(InvalidValue::ColorTooDark(hex.to_ascii_lowercase()));
        }
        Ok(color)
    }

    /// Builds a readable color from a hue in degrees, for default colors.
    pub fn from_hue(hue: u16) -> Self {
        // A light, fairly saturated HSL color (l = 0.65, s = 0.8) is readable
        // on black at every hue.
        let hue = f64::from(hue % 360) / 60.0;
        let chroma = (1.0 - (2.0 * 0.65_f64 - 1.0).abs()) * 0.8;
        let second = chroma * (1.0 - (hue % 2.0 - 1.0).abs());
        let (red, green, blue) = match hue as u32 {
            0 => (chroma, second, 0.0),
            1 => (second, chroma, 0.0),
            2 => (0.0, chroma, second),
            3 => (0.0, second, chroma),
            4 => (second, 0.0, chroma),
            _ => (chroma, 0.0, second),
        };
        let lightness_base = 0.65 - chroma / 2.0;
        let to_byte = |value: f64| ((value + lightness_base) * 255.0).round() as u8;
        let color = Color([to_byte(red), to_byte(green), to_byte(blue)]);
        if color.luminance() >= Self::MIN_LUMINANCE {
            color
        } else {
            // Pure blues are the darkest hues; lift them towards white.
            Color([color.0[0].max(140), color.0[1].max(140), color.0[2]])
        }
    }

    fn luminance(self) -> f64 {
        let linear = |byte: u8| {
            let value = f64::from(byte) / 255.0;
            if value <= 0.04045 {
                value / 12.92
            } else {
                ((value + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * linear(self.0[0]) + 0.7152 * linear(self.0[1]) + 0.0722 * linear(self.0[2])
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}{:02x}{:02x}", self.0[0], self.0[1], self.0[2])
    }
}

/// A send's id, made by the client: 1–64 characters of `A-Z a-z 0-9 _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SendId(String);

impl SendId {
    /// Checks an id.
    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        let allowed = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-';
        if is_made_of(text, 64, allowed) {
            Ok(SendId(text.to_owned()))
        } else {
            Err(InvalidValue::Id)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names() {
        let check = |text: &str, expected: Option<&str>| {
            assert_eq!(
                ChannelName::parse(text)
                    .ok()
                    .as_ref()
                    .map(ChannelName::as_str),
                expected,
                "{text:?}"
            );
        };
        check("Games", Some("games"));
        check(" dev-ops_2 ", Some("dev-ops_2"));
        check("", None);
        check("a b", None);
        check("<script>", None);
        check(&"x".repeat(33), None);
        check("café", None);
    }

    #[test]
    fn names() {
        let check =
            |text: &str, valid: bool| assert_eq!(Name::parse(text).is_ok(), valid, "{text:?}");
        check("Ada.L", true);
        check("guest-1234", true);
        check("", false);
        check("two words", false);
        check(&"n".repeat(25), false);
        check("<b>", false);
        assert_eq!(Name::parse("Ada").unwrap().key(), "ada");
    }

    #[test]
    fn colors() {
        let check = |text: &str, expected: Result<&str, InvalidValue>| {
            assert_eq!(
                Color::parse(text).map(|color| color.to_string()),
                expected.map(str::to_owned),
                "{text:?}"
            );
        };
        check("66CCFF", Ok("66ccff"));
        check("#ff8800", Ok("ff8800"));
        check("ffffff", Ok("ffffff"));
        check("000000", Err(InvalidValue::ColorTooDark("000000".into())));
        check("0000ff", Err(InvalidValue::ColorTooDark("0000ff".into())));
        check("fff", Err(InvalidValue::ColorFormat));
        check("gggggg", Err(InvalidValue::ColorFormat));
    }

    #[test]
    fn every_hue_gives_a_readable_color() {
        for hue in 0..360 {
            let color = Color::from_hue(hue);
            assert!(
                Color::parse(&color.to_string()).is_ok(),
                "hue {hue} gave {color}"
            );
        }
    }

    #[test]
    fn send_ids() {
        assert!(SendId::parse("m-5f1e_9c2a").is_ok());
        assert!(SendId::parse("").is_err());
        assert!(SendId::parse("a b").is_err());
        assert!(SendId::parse(&"i".repeat(65)).is_err());
    }
}
