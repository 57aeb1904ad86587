//! Directory-entry metadata: Tahoe's `{"tahoe": {"linkcrtime", "linkmotime"}, ...}` dictionary and
//! Python's `json.dumps` text form, which is what dirnodes store (tahoe-formats.md §7).

use serde_json::{Map, Value};

/// A child's metadata, in insertion order.
pub type Metadata = Map<String, Value>;

/// Formats a JSON value as Python's `json.dumps` does by default: `", "` and `": "` separators,
/// non-ASCII escaped as `\uXXXX`, floats in `repr` form.
pub fn python_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                out.push_str(&python_float(f));
            } else {
                out.push_str(&n.to_string());
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_string(out, key);
                out.push_str(": ");
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// Python's float `repr`: the shortest round-trip digits, always with a `.0` or an exponent.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Python: 1e+16, 1.5e-05.
        let text = format!("{f:e}");
        let (mantissa, exponent) = text.split_once('e').expect("invariant: {:e} has an exponent");
        let exponent: i32 = exponent.parse().expect("invariant: numeric exponent");
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.abs());
    }
    let text = format!("{f}");
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Tahoe's `update_metadata`: the metadata of a link after it is (re)made at `now`. User keys come
/// from `new` when given (else the old ones stay); `tahoe.linkcrtime` is kept from the old link,
/// `tahoe.linkmotime` becomes `now`.
pub fn update_metadata(old: Option<&Metadata>, new: Option<Metadata>, now: f64) -> Metadata {
    let mut metadata = old.cloned().unwrap_or_default();
    let old_ctime = metadata.get("ctime").cloned();
    if let Some(mut new) = new {
        new.shift_remove("tahoe");
        if let Some(tahoe) = metadata.get("tahoe") {
            new.insert("tahoe".into(), tahoe.clone());
        }
        if !new.contains_key("ctime")
            && let Some(ctime) = &old_ctime
        {
            new.insert("ctime".into(), ctime.clone());
        }
        metadata = new;
    }
    let mut sys = match metadata.shift_remove("tahoe") {
        Some(Value::Object(sys)) => sys,
        _ => Map::new(),
    };
    if !sys.contains_key("linkcrtime") {
        sys.insert("linkcrtime".into(), old_ctime.unwrap_or_else(|| float(now)));
    }
    sys.insert("linkmotime".into(), float(now));
    metadata.insert("tahoe".into(), Value::Object(sys));
    metadata
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Now, in Unix seconds with a fraction (Tahoe's `time.time()`).
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python_json_dumps() {
        let value: Value = serde_json::from_str(
            r#"{"tahoe": {"linkcrtime": 1234567890.0, "linkmotime": 1732480000.125}, "n\u00e9": [1, true, null, "a\"b"], "big": 1e16, "small": 0.00001}"#,
        )
        .expect("json");
        assert_eq!(
            python_json(&value),
            r#"{"tahoe": {"linkcrtime": 1234567890.0, "linkmotime": 1732480000.125}, "n\u00e9": [1, true, null, "a\"b"], "big": 1e+16, "small": 1e-05}"#
        );
    }

    #[test]
    fn update_keeps_creation_time_and_user_keys_as_tahoe() {
        let first = update_metadata(None, None, 100.5);
        assert_eq!(
            python_json(&Value::Object(first.clone())),
            r#"{"tahoe": {"linkcrtime": 100.5, "linkmotime": 100.5}}"#
        );
        let mut user = Metadata::new();
        user.insert("mtime".into(), float(7.0));
        user.insert("tahoe".into(), Value::String("ignored".into()));
        let second = update_metadata(Some(&first), Some(user), 200.0);
        assert_eq!(
            python_json(&Value::Object(second.clone())),
            r#"{"mtime": 7.0, "tahoe": {"linkcrtime": 100.5, "linkmotime": 200.0}}"#
        );
        let third = update_metadata(Some(&second), None, 300.0);
        assert_eq!(third["mtime"], float(7.0));
        assert_eq!(third["tahoe"]["linkmotime"], float(300.0));
    }
}
