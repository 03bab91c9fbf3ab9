//! KServe V1 checks read straight from the bytes: the same figures `check` takes from a
//! parsed `Value`, without building the tree. Building it (a `Vec` per row, a map per
//! object) was most of the sidecar's CPU per proxied prediction.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::sanity::read::{leaf_visits, scalar_visits, Skip};

/// What the checks need from a V1 response.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(in crate::sanity) struct Summary {
    /// `None` when `predictions` is missing or not an array (as `Value::get` +
    /// `as_array` would find it: the last `predictions` key wins).
    pub predictions: Option<Rows>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(in crate::sanity) struct Rows {
    pub count: usize,
    /// A `null` or non-finite number at any depth of nested arrays.
    pub non_finite: bool,
    /// Every row is a probability or a row of probabilities summing to 1 ± epsilon.
    pub probability_rows: bool,
}

/// Reads `body` as strict JSON (like `serde_json::from_slice`); `None` when it is not,
/// so the caller falls back to the lenient, tree-building path.
pub(in crate::sanity) fn summarize(body: &[u8], epsilon: f64) -> Option<Summary> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let summary = Top { epsilon }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(summary)
}

struct Top {
    epsilon: f64,
}

impl<'de> DeserializeSeed<'de> for Top {
    type Value = Summary;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Summary, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top {
    type Value = Summary;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Summary, A::Error> {
        let mut predictions = None;
        while let Some(is_predictions) = map.next_key_seed(KeyIs("predictions"))? {
            if is_predictions {
                predictions = map.next_value_seed(Predictions {
                    epsilon: self.epsilon,
                })?;
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(Summary { predictions })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Summary, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Summary { predictions: None })
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Summary, E> {
        Ok(Summary { predictions: None })
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Summary, E> {
        Ok(Summary { predictions: None })
    }
    scalar_visits!(Summary { predictions: None });
}

/// A map key compared with a constant, without allocating.
struct KeyIs(&'static str);

impl<'de> DeserializeSeed<'de> for KeyIs {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

struct Predictions {
    epsilon: f64,
}

impl<'de> DeserializeSeed<'de> for Predictions {
    type Value = Option<Rows>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Rows>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Predictions {
    type Value = Option<Rows>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("predictions")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Rows>, A::Error> {
        let mut rows = Rows {
            count: 0,
            non_finite: false,
            probability_rows: true,
        };
        while let Some(row) = seq.next_element_seed(Node {
            epsilon: self.epsilon,
        })? {
            rows.count += 1;
            rows.non_finite |= row.non_finite;
            rows.probability_rows &= row.probability_row;
        }
        Ok(Some(rows))
    }
    scalar_visits!(None);
    leaf_visits!(None);
}

/// One value inside `predictions`: a row, or (inside a row) an item.
#[derive(Debug, Clone, Copy)]
struct NodeFacts {
    non_finite: bool,
    /// The value as a number (`Value::as_f64`), for the sum of a row.
    number: Option<f64>,
    /// As a row: a probability, or an array of probabilities summing to 1 ± epsilon.
    probability_row: bool,
}

const NOT_A_NUMBER: NodeFacts = NodeFacts {
    non_finite: false,
    number: None,
    probability_row: false,
};

struct Node {
    epsilon: f64,
}

impl Node {
    fn number(x: f64) -> NodeFacts {
        NodeFacts {
            non_finite: !x.is_finite(),
            number: Some(x),
            probability_row: in_unit(x),
        }
    }
}

fn in_unit(x: f64) -> bool {
    (0.0..=1.0).contains(&x)
}

impl<'de> DeserializeSeed<'de> for Node {
    type Value = NodeFacts;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<NodeFacts, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node {
    type Value = NodeFacts;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a prediction")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeFacts, A::Error> {
        let mut non_finite = false;
        let mut all_unit = true;
        let mut sum = 0.0;
        while let Some(item) = seq.next_element_seed(Node {
            epsilon: self.epsilon,
        })? {
            non_finite |= item.non_finite;
            match item.number {
                Some(x) if all_unit && in_unit(x) => sum += x,
                _ => all_unit = false,
            }
        }
        Ok(NodeFacts {
            non_finite,
            number: None,
            probability_row: all_unit && (sum - 1.0_f64).abs() <= self.epsilon,
        })
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<NodeFacts, E> {
        Ok(Self::number(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<NodeFacts, E> {
        Ok(Self::number(v as f64))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<NodeFacts, E> {
        Ok(Self::number(v as f64))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<NodeFacts, E> {
        Ok(NodeFacts {
            non_finite: true,
            ..NOT_A_NUMBER
        })
    }
    leaf_visits!(NOT_A_NUMBER);
}
