//! Reading a streamed event through its raw members: the few members a translator needs, each
//! kept as borrowed JSON text (`&RawValue`), instead of a `Value` with a map per object. What
//! a translator passes on (a text, a tool's id and name, its argument pieces) can then go out
//! as the upstream wrote it, since a `&RawValue` serialises verbatim.
//!
//! A member of an unexpected type reads as absent, as a lookup in a `Value` would
//! (`Value::get(..).and_then(Value::as_str)`): each helper here answers `None` or a default
//! for it rather than an error.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// The members of a JSON object read into `T` (a `#[derive(Deserialize)]` struct of
/// `Option<&RawValue>` fields with `#[serde(default)]`); `None` when the text is not one
/// JSON object, or names one of `T`'s members twice.
///
/// Only an object is read: serde would also fill a struct from a JSON array, element by
/// element, where a `Value` lookup by name finds nothing.
pub(crate) fn object<'a, T: Deserialize<'a>>(json: &'a str) -> Option<T> {
    if !json.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(json).ok()
}

/// The members of a nested object; all absent when it is absent or not an object (or names
/// one of `T`'s members twice).
pub(crate) fn members<'a, T: Deserialize<'a> + Default>(raw: Option<&'a RawValue>) -> T {
    raw.and_then(|r| object(r.get())).unwrap_or_default()
}

/// A member's string; `None` when it is absent or not a string. Borrowed unless it holds
/// escapes; read again only when it does.
pub(crate) fn text_of(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let r = raw?.get();
    if let Some(s) = unescaped(r) {
        return Some(Cow::Borrowed(s));
    }
    let mut de = serde_json::Deserializer::from_str(r);
    de.deserialize_str(TextVisitor).ok()
}

/// The text of a raw string without escapes, between its quotes. A `RawValue` holds valid
/// JSON (serde_json checked it as it read it: no control characters in a string), so such a
/// string needs no second reading; one with escapes does (a lone surrogate `\ud800` is
/// well-formed JSON but no string).
fn unescaped(r: &str) -> Option<&str> {
    let inner = r.strip_prefix('"')?.strip_suffix('"')?;
    memchr::memchr(b'\\', inner.as_bytes()).is_none().then_some(inner)
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(s))
    }
}

/// The member when it is a string (one `text_of` reads), as the upstream wrote it, for
/// passing on verbatim; `None` when it is absent or not a string. Nothing is copied unless
/// it holds escapes.
pub(crate) fn string_of(raw: Option<&RawValue>) -> Option<&RawValue> {
    let raw = raw?;
    if unescaped(raw.get()).is_some() {
        return Some(raw);
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_str(IsText).ok().map(|()| raw)
}

/// Checks a string (escapes, surrogate pairs) without keeping it.
struct IsText;

impl Visitor<'_> for IsText {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
}

/// A member as a `Value` (a usage object: once or twice a stream).
pub(crate) fn value_of(raw: Option<&RawValue>) -> Option<Value> {
    serde_json::from_str(raw?.get()).ok()
}

/// The first element of an array member, as raw JSON; `None` when the member is not an
/// array or is empty, as `Value::get(0)` reads it. The other elements are skipped, not
/// collected. Any other type reads as `None` rather than failing the object around it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct First<'a>(pub Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for First<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FirstVisitor)
    }
}

struct FirstVisitor;

impl<'de> Visitor<'de> for FirstVisitor {
    type Value = First<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<First<'de>, A::Error> {
        let first = seq.next_element::<&'de RawValue>()?;
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(First(first))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<First<'de>, A::Error> {
        use serde::de::IgnoredAny;
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(First(None))
    }

    fn visit_unit<E>(self) -> Result<First<'de>, E> {
        Ok(First(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<First<'de>, E> {
        Ok(First(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<First<'de>, E> {
        Ok(First(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<First<'de>, E> {
        Ok(First(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<First<'de>, E> {
        Ok(First(None))
    }

    fn visit_str<E>(self, _: &str) -> Result<First<'de>, E> {
        Ok(First(None))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Default, Deserialize)]
    #[serde(default)]
    struct M<'a> {
        #[serde(borrow)]
        a: Option<&'a RawValue>,
        #[serde(borrow)]
        b: Option<&'a RawValue>,
        #[serde(borrow)]
        list: First<'a>,
    }

    #[test]
    fn only_objects_are_read() {
        let m: M = object(r#" {"a":"x","b":[1],"c":{}}"#).unwrap();
        assert_eq!(text_of(m.a).as_deref(), Some("x"));
        assert_eq!(text_of(m.b), None);
        assert!(object::<M>(r#"["x","y"]"#).is_none());
        assert!(object::<M>("5").is_none());
        assert!(object::<M>("not json").is_none());
        assert!(object::<M>(r#"{"a":1,"a":2}"#).is_none());
        let raw: &RawValue = serde_json::from_str(r#"["x","y"]"#).unwrap();
        let m: M = members(Some(raw));
        assert!(m.a.is_none() && m.b.is_none());
    }

    #[test]
    fn texts_read_with_or_without_escapes() {
        let raw: &RawValue = serde_json::from_str(r#""plain""#).unwrap();
        assert!(matches!(text_of(Some(raw)), Some(Cow::Borrowed("plain"))));
        let raw: &RawValue = serde_json::from_str(r#""a\"b\u00e9""#).unwrap();
        assert_eq!(text_of(Some(raw)).as_deref(), Some("a\"b\u{e9}"));
        assert_eq!(string_of(Some(raw)).map(RawValue::get), Some(r#""a\"b\u00e9""#));
        for odd in ["1", "null", "[]", "{}", "true", r#""\ud800""#, r#""\ud800x""#] {
            let raw: &RawValue = serde_json::from_str(odd).unwrap();
            assert_eq!(text_of(Some(raw)), None, "{odd}");
            assert!(string_of(Some(raw)).is_none(), "{odd}");
        }
        assert_eq!(text_of(None), None);
        assert!(string_of(None).is_none());
    }

    #[test]
    fn the_first_element_of_an_array_and_nothing_of_anything_else() {
        let m: M = object(r#"{"list":[{"x":1},2,[3]],"a":"after"}"#).unwrap();
        assert_eq!(m.list.0.map(RawValue::get), Some(r#"{"x":1}"#));
        assert_eq!(text_of(m.a).as_deref(), Some("after"));
        let m: M = object(r#"{"list":[null]}"#).unwrap();
        assert_eq!(m.list.0.map(RawValue::get), Some("null"));
        for odd in ["[]", "null", "5", "-5", "1.5", "true", r#""x""#, r#"{"0":1}"#] {
            let json = format!(r#"{{"list":{odd},"a":"after"}}"#);
            let m: M = object(&json).unwrap();
            assert!(m.list.0.is_none(), "{odd}");
            assert_eq!(text_of(m.a).as_deref(), Some("after"), "{odd}");
        }
    }
}
