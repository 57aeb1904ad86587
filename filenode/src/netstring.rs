//! Netstrings: `len ":" bytes ","`, used in hash preimages, the URI extension block and dirnodes.

/// Appends `netstring(bytes)` to `out`.
pub fn write_netstring(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
    out.push(b',');
}

/// Returns `netstring(bytes)`.
pub fn netstring(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 12);
    write_netstring(&mut out, bytes);
    out
}

/// Why a netstring could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetstringError {
    /// The length prefix is missing, not decimal, or has a leading zero.
    #[error("netstring length is not a decimal number")]
    BadLength,
    /// The input ends before the announced length.
    #[error("netstring is truncated")]
    Truncated,
    /// The byte after the body is not a comma.
    #[error("netstring does not end with ','")]
    MissingComma,
}

/// Reads one netstring from the front of `input`, returning its body and the rest of the input.
pub fn split_netstring(input: &[u8]) -> Result<(&[u8], &[u8]), NetstringError> {
    let colon = input
        .iter()
        .position(|&b| b == b':')
        .ok_or(NetstringError::BadLength)?;
    let digits = &input[..colon];
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(NetstringError::BadLength);
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return Err(NetstringError::BadLength);
    }
    let len: usize = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or(NetstringError::BadLength)?;
    let body_start = colon + 1;
    let body_end = body_start.checked_add(len).ok_or(NetstringError::Truncated)?;
    if input.len() <= body_end {
        return Err(NetstringError::Truncated);
    }
    if input[body_end] != b',' {
        return Err(NetstringError::MissingComma);
    }
    Ok((&input[body_start..body_end], &input[body_end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples() {
        assert_eq!(netstring(b"abc"), b"3:abc,");
        assert_eq!(netstring(b""), b"0:,");
    }

    #[test]
    fn split_round_trip_and_errors() {
        let mut buf = netstring(b"hello");
        buf.extend_from_slice(&netstring(b""));
        let (first, rest) = split_netstring(&buf).unwrap();
        assert_eq!(first, b"hello");
        let (second, rest) = split_netstring(rest).unwrap();
        assert_eq!(second, b"");
        assert!(rest.is_empty());
        assert_eq!(split_netstring(b"5:abc,"), Err(NetstringError::Truncated));
        assert_eq!(split_netstring(b"3:abcd"), Err(NetstringError::MissingComma));
        assert_eq!(split_netstring(b"x:abc,"), Err(NetstringError::BadLength));
        assert_eq!(split_netstring(b"03:abc,"), Err(NetstringError::BadLength));
    }
}
