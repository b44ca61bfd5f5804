//! SASL PLAIN (RFC 4616): one message, `[authzid] NUL authcid NUL passwd`.
//! The password is checked against the user's stored SCRAM credential, so
//! PLAIN needs no clear-text store of its own.

/// A PLAIN token taken apart.
#[derive(Debug, PartialEq, Eq)]
pub struct PlainToken<'a> {
    pub user: &'a str,
    pub password: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("malformed PLAIN token: expected [authzid] NUL user NUL password")]
    Malformed,
    #[error("the authorization id differs from the user name")]
    AuthorizationId,
}

pub fn parse(token: &[u8]) -> Result<PlainToken<'_>, PlainError> {
    let text = std::str::from_utf8(token).map_err(|_| PlainError::Malformed)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    if user.is_empty() || password.is_empty() {
        return Err(PlainError::Malformed);
    }
    // As in Kafka: a client may not act for another principal.
    if !authzid.is_empty() && authzid != user {
        return Err(PlainError::AuthorizationId);
    }
    Ok(PlainToken { user, password })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_and_bad_ones_are_refused() {
        let token = parse(b"\0alice\0secret").unwrap();
        assert_eq!((token.user, token.password), ("alice", "secret"));
        assert!(parse(b"alice\0alice\0secret").is_ok());
        assert_eq!(
            parse(b"bob\0alice\0secret"),
            Err(PlainError::AuthorizationId)
        );
        for bad in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0\0pw",
            b"\0a\0",
            b"\0a\0b\0c",
            b"\0a\0\xff",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
