//! Small helpers over `ciborium::Value` for the storage protocol's CBOR messages.
//!
//! Messages are decoded by hand from a `Value` rather than through serde derives, so that every
//! schema violation gets a precise message (the server sends it back in a 400, as Tahoe's CDDL
//! validator does), tag 258 (sets) is handled explicitly, and the version message's byte-string keys
//! need no special types. Decoding is strict where the server reads requests (closed maps, tagged
//! sets) and lenient where the client reads responses (unknown keys ignored, untagged sets accepted),
//! so that either side keeps working against a newer peer.

// Request decoders and response encoders are used only by the server (feature `server`).
#![cfg_attr(not(feature = "server"), allow(dead_code))]

use ciborium::value::Value;

use crate::ShareNum;

/// CBOR tag for a set (an array with no duplicates), as cbor2 writes Python sets.
pub(crate) const SET_TAG: u64 = 258;

/// A decoding failure, described for a human.
pub(crate) type Decoded<T> = Result<T, String>;

/// Serializes a value.
pub(crate) fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("invariant: writing CBOR into a Vec cannot fail");
    out
}

/// Parses exactly one CBOR item that fills the whole input.
pub(crate) fn from_slice(bytes: &[u8]) -> Decoded<Value> {
    let mut reader = bytes;
    let value: Value = ciborium::from_reader(&mut reader).map_err(|e| format!("malformed CBOR: {e}"))?;
    if !reader.is_empty() {
        return Err(format!(
            "{} bytes of trailing data after the CBOR item",
            reader.len()
        ));
    }
    Ok(value)
}

/// An unsigned integer.
pub(crate) fn uint(n: u64) -> Value {
    Value::Integer(n.into())
}

/// A set of share numbers: tag 258 around a sorted array.
pub(crate) fn share_set<'a>(shares: impl IntoIterator<Item = &'a ShareNum>) -> Value {
    Value::Tag(
        SET_TAG,
        Box::new(Value::Array(
            shares.into_iter().map(|n| uint(u64::from(*n))).collect(),
        )),
    )
}

/// A map with text keys.
pub(crate) fn text_map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.to_owned()), v))
            .collect(),
    )
}

/// The entries of a map, by key, for decoding.
#[derive(Debug)]
pub(crate) struct Fields {
    what: &'static str,
    entries: Vec<(String, Value)>,
}

impl Fields {
    /// A map whose keys must be text strings (all messages except `/version`).
    pub(crate) fn text_keys(value: Value, what: &'static str) -> Decoded<Self> {
        Self::new(value, what, false)
    }

    /// A map whose keys may be text or byte strings (the `/version` message uses byte strings).
    pub(crate) fn any_string_keys(value: Value, what: &'static str) -> Decoded<Self> {
        Self::new(value, what, true)
    }

    fn new(value: Value, what: &'static str, allow_bytes: bool) -> Decoded<Self> {
        let Value::Map(pairs) = value else {
            return Err(format!("{what}: expected a map, got {}", describe(&value)));
        };
        let mut entries: Vec<(String, Value)> = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            let key = match key {
                Value::Text(key) => key,
                Value::Bytes(key) if allow_bytes => {
                    String::from_utf8(key).map_err(|_| format!("{what}: a key is not UTF-8"))?
                }
                other => {
                    return Err(format!(
                        "{what}: map keys must be text strings, got {}",
                        describe(&other)
                    ));
                }
            };
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(format!("{what}: duplicate key {key:?}"));
            }
            entries.push((key, value));
        }
        Ok(Fields { what, entries })
    }

    /// Removes and returns a required entry.
    pub(crate) fn take(&mut self, key: &str) -> Decoded<Value> {
        self.take_optional(key)
            .ok_or_else(|| format!("{}: missing key {key:?}", self.what))
    }

    /// Removes and returns an entry if present.
    pub(crate) fn take_optional(&mut self, key: &str) -> Option<Value> {
        let index = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.swap_remove(index).1)
    }

    /// Fails if keys other than the ones taken remain (closed maps, as the CDDL schemas are).
    pub(crate) fn finish(self) -> Decoded<()> {
        match self.entries.first() {
            None => Ok(()),
            Some((key, _)) => Err(format!("{}: unexpected key {key:?}", self.what)),
        }
    }
}

/// A short description of a value's type, for error messages.
pub(crate) fn describe(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) => "an integer",
        Value::Bytes(_) => "a byte string",
        Value::Float(_) => "a float",
        Value::Text(_) => "a text string",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        Value::Tag(_, _) => "a tagged value",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        _ => "an unknown CBOR item",
    }
}

pub(crate) fn as_u64(value: Value, what: &str) -> Decoded<u64> {
    match value {
        Value::Integer(n) => u64::try_from(n).map_err(|_| format!("{what}: expected an unsigned integer")),
        other => Err(format!(
            "{what}: expected an unsigned integer, got {}",
            describe(&other)
        )),
    }
}

pub(crate) fn as_bytes(value: Value, what: &str) -> Decoded<Vec<u8>> {
    match value {
        Value::Bytes(b) => Ok(b),
        other => Err(format!(
            "{what}: expected a byte string, got {}",
            describe(&other)
        )),
    }
}

pub(crate) fn as_text(value: Value, what: &str) -> Decoded<String> {
    match value {
        Value::Text(t) => Ok(t),
        other => Err(format!(
            "{what}: expected a text string, got {}",
            describe(&other)
        )),
    }
}

pub(crate) fn as_bool(value: Value, what: &str) -> Decoded<bool> {
    match value {
        Value::Bool(b) => Ok(b),
        other => Err(format!("{what}: expected a boolean, got {}", describe(&other))),
    }
}

pub(crate) fn as_array(value: Value, what: &str) -> Decoded<Vec<Value>> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(format!("{what}: expected an array, got {}", describe(&other))),
    }
}

/// A set: tag 258 around an array. With `strict`, the tag is required (as the server's schemas say);
/// without, a plain array is accepted too.
pub(crate) fn as_set(value: Value, what: &str, strict: bool) -> Decoded<Vec<Value>> {
    match value {
        Value::Tag(SET_TAG, inner) => as_array(*inner, what),
        Value::Tag(tag, _) => Err(format!("{what}: expected a set (tag {SET_TAG}), got tag {tag}")),
        Value::Array(items) if !strict => Ok(items),
        other => Err(format!(
            "{what}: expected a set (tag {SET_TAG} around an array), got {}",
            describe(&other)
        )),
    }
}

/// A share number: an unsigned integer in 0..=255.
pub(crate) fn as_share_num(value: Value, what: &str) -> Decoded<ShareNum> {
    let n = as_u64(value, what)?;
    if n > 255 {
        return Err(format!("{what}: share number {n} is out of range 0..=255"));
    }
    Ok(n as ShareNum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_tagged_and_round_trip() {
        let encoded = to_vec(&share_set(&[1, 2, 7]));
        // Tag 258 is 0xd9 0x01 0x02.
        assert_eq!(&encoded[..3], &[0xd9, 0x01, 0x02]);
        let decoded = as_set(from_slice(&encoded).unwrap(), "x", true).unwrap();
        assert_eq!(decoded.len(), 3);
        // Strict decoding wants the tag.
        let plain = to_vec(&Value::Array(vec![uint(1)]));
        assert!(as_set(from_slice(&plain).unwrap(), "x", true).is_err());
        assert!(as_set(from_slice(&plain).unwrap(), "x", false).is_ok());
    }

    #[test]
    fn trailing_bytes_and_garbage_are_refused() {
        let mut encoded = to_vec(&uint(5));
        encoded.push(0);
        assert!(from_slice(&encoded).unwrap_err().contains("trailing"));
        assert!(from_slice(&[0xff, 0xff]).is_err());
        assert!(from_slice(&[]).is_err());
    }

    #[test]
    fn fields_are_closed_and_unique() {
        let value = text_map(vec![("a", uint(1)), ("b", uint(2))]);
        let mut fields = Fields::text_keys(value.clone(), "m").unwrap();
        assert_eq!(as_u64(fields.take("a").unwrap(), "a").unwrap(), 1);
        assert!(fields.take("zz").is_err());
        assert!(fields.finish().unwrap_err().contains("\"b\""));
        let dup = Value::Map(vec![
            (Value::Text("a".into()), uint(1)),
            (Value::Text("a".into()), uint(1)),
        ]);
        assert!(Fields::text_keys(dup, "m").unwrap_err().contains("duplicate"));
        let bytes_keys = Value::Map(vec![(Value::Bytes(b"a".to_vec()), uint(1))]);
        assert!(Fields::text_keys(bytes_keys.clone(), "m").is_err());
        assert!(Fields::any_string_keys(bytes_keys, "m").is_ok());
    }

    #[test]
    fn share_numbers_are_bounded() {
        assert_eq!(as_share_num(uint(255), "s").unwrap(), 255);
        assert!(as_share_num(uint(256), "s").is_err());
        assert!(as_share_num(Value::Integer((-1i64).into()), "s").is_err());
    }
}
