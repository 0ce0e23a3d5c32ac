//! The `Host` rule of RFC 9112, section 3.2, which both fronts apply: an
//! HTTP/1.1 request has exactly one `Host` header, and no request has two.

/// What is wrong with a request's `Host` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostError {
    #[error("an HTTP/1.1 request needs a Host header")]
    Missing,
    #[error("a request may have one Host header, not {0}")]
    Repeated(usize),
}

/// The rule of RFC 9112, section 3.2, for both fronts: an HTTP/1.1
/// request has exactly one `Host` header, and no request has two.
pub(crate) fn check_host(http_1_1: bool, n_hosts: usize) -> Result<(), HostError> {
    match n_hosts {
        0 if http_1_1 => Err(HostError::Missing),
        0 | 1 => Ok(()),
        n => Err(HostError::Repeated(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_has_one_host_and_an_http_1_1_request_has_one() {
        assert_eq!(check_host(true, 1), Ok(()));
        assert_eq!(check_host(true, 0), Err(HostError::Missing));
        assert_eq!(check_host(true, 2), Err(HostError::Repeated(2)));
        assert_eq!(check_host(false, 0), Ok(()));
        assert_eq!(check_host(false, 1), Ok(()));
        assert_eq!(check_host(false, 3), Err(HostError::Repeated(3)));
    }
}
