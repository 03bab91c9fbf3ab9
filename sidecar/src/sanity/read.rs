//! Reading a response's JSON bytes straight into what the checks need, with no
//! `serde_json::Value` tree (building one was most of the cost of a checked answer).
//! Each reader accepts only plain, strict JSON of the usual shape and answers `None`
//! otherwise; its caller then takes the tree path, whose findings the readers match
//! on every body they accept (each protocol's tests compare both).

use std::{borrow::Cow, fmt, marker::PhantomData};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Accepts (and, for objects, reads through) booleans, strings and objects as `$out`,
/// so shapes the checks do not look into read as "absent" (what `Value::get` and
/// `as_array` give) rather than as a type error.
macro_rules! leaf_visits {
    ($out:expr) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<Skip, Skip>()?.is_some() {}
            Ok($out)
        }
    };
}

/// Accepts numbers and `null` as `$out`.
macro_rules! scalar_visits {
    ($out:expr) => {
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($out)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok($out)
        }
    };
}

/// Any value, read and dropped. Unlike `serde::de::IgnoredAny` it decodes strings, so
/// what the tree path rejects (lone surrogates, invalid UTF-8) is rejected here too.
pub(in crate::sanity) struct Skip;

impl<'de> serde::Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = Skip;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    scalar_visits!(Skip);
    leaf_visits!(Skip);
}

pub(super) use {leaf_visits, scalar_visits};

/// A JSON string, borrowed from the input unless it has escapes.
pub(super) struct Text<'de>(pub Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(s.to_owned())))
    }
}

/// An object the checks read some keys of: `field` reads the value of `KEYS[i]`.
/// Other keys' values are read (and checked) and dropped; a key read twice is an
/// error, since the tree path keeps the last and a reader must not guess.
pub(super) trait Fields<'de>: Default {
    const KEYS: &'static [&'static str];
    fn field<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error>;
}

/// `T` read from a JSON object; any other value is an error.
pub(super) struct Object<T>(pub T);

impl<'de, T: Fields<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor(PhantomData))
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Fields<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = Object<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object with {:?}", T::KEYS)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<T>, A::Error> {
        let mut out = T::default();
        let mut seen = 0u64; // a bit per key of KEYS
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match T::KEYS.iter().position(|k| *k == key.0) {
                Some(i) if seen & (1 << i) != 0 => {
                    return Err(de::Error::custom(format_args!("repeated key {}", key.0)));
                }
                Some(i) => {
                    seen |= 1 << i;
                    out.field(i, &mut map)?;
                }
                None => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Object(out))
    }
}

/// Reads all of `body` (strict JSON, nothing after it) as an object of `T`.
pub(super) fn object<'de, T: Fields<'de>>(body: &'de [u8]) -> Option<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let Object(out) = Object::<T>::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(out)
}
