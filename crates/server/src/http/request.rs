//! Reading a chat request's parts: its JSON body (of the protocol's
//! version) and the client's address in a trusted proxy's header.

use std::net::IpAddr;

use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Decodes a chat request's body: JSON of the protocol's version.
pub(crate) fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Most bodies carry no version: one pass is enough for them. The
    // envelope's pass read every key once more, a quarter of a poll's
    // instructions in user space. Only for objects, though: serde also
    // reads a struct from an array (`["token"]`), which the envelope
    // refuses, and the protocol's bodies are objects.
    if is_object(bytes) && !may_carry_version(bytes) {
        if let Ok(request) = talk_protocol::from_json(bytes) {
            return Ok(request);
        }
    }
    decode_versioned_json(bytes)
}

/// Decodes a chat request's body the plain way: the envelope's version
/// first, then the request. `decode_json` must agree with it on every body
/// (the fuzz target `request_body` checks that).
pub(crate) fn decode_versioned_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let envelope: talk_protocol::Envelope = talk_protocol::from_json(bytes)
        .map_err(|error| ApiError::BadRequest(format!("the body is not a JSON object: {error}")))?;
    if let Some(version) = envelope
        .v
        .filter(|version| *version != talk_protocol::VERSION)
    {
        return Err(ApiError::UnsupportedVersion(version));
    }
    talk_protocol::from_json(bytes).map_err(|error| {
        ApiError::BadRequest(format!("the request does not fit the protocol: {error}"))
    })
}

/// Whether a JSON body starts as an object, after JSON's whitespace.
fn is_object(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
        == Some(&b'{')
}

/// Whether a JSON body may have a key `v`: such a key is written `"v"`, or
/// with an escape, so a body with neither has none.
fn may_carry_version(bytes: &[u8]) -> bool {
    memchr::memchr(b'\\', bytes).is_some() || memchr::memmem::find(bytes, b"\"v\"").is_some()
}

/// The client's address in a trusted proxy's header: the last one listed.
pub(crate) fn forwarded_ip(value: &[u8]) -> Option<IpAddr> {
    let value = std::str::from_utf8(value).ok()?;
    value.rsplit(',').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use talk_protocol::PollRequest;

    /// What `decode_json` makes of `body`: the token, or the error's text.
    fn decoded(body: &str) -> Result<String, String> {
        decode_json::<PollRequest>(body.as_bytes())
            .map(|request| request.token)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn a_version_is_found_however_its_key_is_written() {
        assert_eq!(decoded(r#"{"token":"t"}"#), Ok("t".into()));
        assert_eq!(decoded(r#"{"token":"t","v":1}"#), Ok("t".into()));
        // The value "v" is no key: one pass still reads it right.
        assert_eq!(decoded(r#"{"token":"v"}"#), Ok("v".into()));
        let unsupported = decode_json::<PollRequest>(br#"{"v":2,"token":"t"}"#);
        assert!(matches!(unsupported, Err(ApiError::UnsupportedVersion(2))));
        let escaped = decode_json::<PollRequest>(br#"{"token":"t","\u0076":2}"#);
        assert!(matches!(escaped, Err(ApiError::UnsupportedVersion(2))));
    }

    /// Checks that both decoders read `body` alike, as `expected`: the
    /// token, or a fragment of the error's text.
    fn check(body: &str, expected: Result<&str, &str>) {
        let one_pass = decoded(body);
        let plain = decode_versioned_json::<PollRequest>(body.as_bytes())
            .map(|request| request.token)
            .map_err(|error| error.to_string());
        assert_eq!(one_pass, plain, "the decoders disagree on {body:?}");
        match (&one_pass, expected) {
            (Ok(token), Ok(expected)) => assert_eq!(token, expected, "{body:?}"),
            (Err(message), Err(fragment)) => {
                assert!(message.contains(fragment), "{body:?}: {message}")
            }
            _ => panic!("{body:?}: got {one_pass:?}, wanted {expected:?}"),
        }
    }

    #[test]
    fn only_an_object_is_a_request() {
        check(r#"{"token":"t"}"#, Ok("t"));
        check(" \r\n\t{\"token\":\"t\"}", Ok("t"));
        // serde reads a struct from an array too; the protocol does not.
        // Found by the fuzz target `request_body`.
        check(r#"["id"]"#, Err("not a JSON object"));
        check(r#" ["t","lobby","e:1",10]"#, Err("not a JSON object"));
        check("[]", Err("does not fit the protocol"));
        let send = decode_json::<talk_protocol::BroadcastRequest>(br#"["send","t","i","x"]"#);
        assert!(matches!(send, Err(ApiError::BadRequest(_))), "{send:?}");
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let not_an_object = decoded(r#""text""#).unwrap_err();
        assert!(
            not_an_object.contains("not a JSON object"),
            "{not_an_object}"
        );
        let missing_token = decoded(r#"{"channel":"main"}"#).unwrap_err();
        assert!(
            missing_token.contains("does not fit the protocol"),
            "{missing_token}"
        );
        assert!(missing_token.contains("token"), "{missing_token}");
    }
}
