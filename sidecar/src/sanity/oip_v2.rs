//! Open Inference Protocol v2 (`/v2/models/<m>/infer`): `{"outputs": [{name, shape,
//! datatype, data}]}`.
//!
//! Two readers feed one judgement: `summarize` reads the bytes straight into what the
//! checks need (no JSON tree: building one was most of the cost of a checked answer),
//! and falls back to the tree (`check`) on anything but plain, strict JSON objects.

use std::{borrow::Cow, fmt};

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{
    json::for_each_leaf,
    read::{self, Fields, Object, Text},
    Findings,
};

/// What the checks need from one output.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Output<'a> {
    name: Option<Cow<'a, str>>,
    /// `None` when absent or not an array of unsigned integers.
    shape: Option<Vec<u64>>,
    datatype: Option<Cow<'a, str>>,
    /// `None` when `data` is absent (a `null` is one leaf).
    data: Option<Leaves>,
}

/// One leaf of `data`, by what the datatypes tell apart.
enum Leaf {
    Null,
    Bool,
    Str,
    /// A number with no fraction or exponent that fits an `i64` or `u64`.
    Int(i128),
    /// Any other number.
    Float,
    Other,
}

/// The leaves of `data` (nested arrays flattened), counted by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Leaves {
    count: u64,
    bools: u64,
    strings: u64,
    nulls: u64,
    ints: u64,
    int_min: i128,
    int_max: i128,
    floats: u64,
}

impl Leaves {
    fn add(&mut self, leaf: Leaf) {
        self.count += 1;
        match leaf {
            Leaf::Null => self.nulls += 1,
            Leaf::Bool => self.bools += 1,
            Leaf::Str => self.strings += 1,
            Leaf::Float => self.floats += 1,
            Leaf::Int(n) => {
                if self.ints == 0 {
                    (self.int_min, self.int_max) = (n, n);
                } else {
                    self.int_min = self.int_min.min(n);
                    self.int_max = self.int_max.max(n);
                }
                self.ints += 1;
            }
            // Objects fit no datatype: counted, of no kind.
            Leaf::Other => {}
        }
    }

    fn add_value(&mut self, v: &Value) {
        self.add(match v {
            Value::Null => Leaf::Null,
            Value::Bool(_) => Leaf::Bool,
            Value::String(_) => Leaf::Str,
            // serde_json's numbers are finite (lenient parsing reads NaN as `null`).
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => Leaf::Int(i.into()),
                (_, Some(u)) => Leaf::Int(u.into()),
                _ => Leaf::Float,
            },
            _ => Leaf::Other,
        });
    }

    /// (every leaf fits `datatype`, every float leaf is finite). Floats written as
    /// `null` (how Python servers encode NaN) are non-finite rather than mistyped.
    fn fit(&self, datatype: &str) -> (bool, bool) {
        let ints_in = |lo: i128, hi: i128| {
            self.ints == self.count
                && (self.ints == 0 || (self.int_min >= lo && self.int_max <= hi))
        };
        match datatype {
            "BOOL" => (self.bools == self.count, true),
            "BYTES" => (self.strings == self.count, true),
            "INT8" => (ints_in(i8::MIN.into(), i8::MAX.into()), true),
            "INT16" => (ints_in(i16::MIN.into(), i16::MAX.into()), true),
            "INT32" => (ints_in(i32::MIN.into(), i32::MAX.into()), true),
            "INT64" => (ints_in(i64::MIN.into(), i64::MAX.into()), true),
            "UINT8" => (ints_in(0, u8::MAX.into()), true),
            "UINT16" => (ints_in(0, u16::MAX.into()), true),
            "UINT32" => (ints_in(0, u32::MAX.into()), true),
            "UINT64" => (ints_in(0, u64::MAX.into()), true),
            "FP16" | "FP32" | "FP64" | "BF16" => (
                self.ints + self.floats + self.nulls == self.count,
                self.nulls == 0,
            ),
            _ => (self.count == 0, true),
        }
    }
}

/// The checks on a parsed tree (lenient JSON, custom rules, unusual shapes).
pub(super) fn check(v: &Value, expected: &[String], f: &mut Findings<'_>) {
    let outputs = (v.get("outputs").and_then(Value::as_array)).map_or(Vec::new(), |outputs| {
        outputs
            .iter()
            .map(|o| Output {
                name: o.get("name").and_then(Value::as_str).map(Cow::Borrowed),
                shape: o
                    .get("shape")
                    .and_then(Value::as_array)
                    .and_then(|dims| dims.iter().map(Value::as_u64).collect()),
                datatype: o.get("datatype").and_then(Value::as_str).map(Cow::Borrowed),
                data: o.get("data").map(|data| {
                    let mut leaves = Leaves::default();
                    for_each_leaf(data, &mut |leaf| leaves.add_value(leaf));
                    leaves
                }),
            })
            .collect::<Vec<_>>()
    });
    judge(&outputs, expected, f);
}

/// The checks on an answer's outputs (none when `outputs` is absent or not an array).
pub(super) fn judge(outputs: &[Output<'_>], expected: &[String], f: &mut Findings<'_>) {
    if outputs.is_empty() {
        f.fail("missing_outputs");
        return;
    }
    for name in expected {
        if !outputs.iter().any(|o| o.name.as_deref() == Some(name)) {
            f.fail("missing_output");
        }
    }
    for output in outputs {
        let (Some(shape), Some(data)) = (&output.shape, &output.data) else {
            f.fail("shape_mismatch");
            continue;
        };
        let (type_ok, finite) = data.fit(output.datatype.as_deref().unwrap_or(""));
        let expected = shape.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d));
        if expected != Some(data.count) {
            f.fail("shape_mismatch");
        }
        if !type_ok {
            f.fail("datatype");
        }
        if !finite {
            f.fail("non_finite");
        }
    }
}

/// Reads `body` as strict JSON into its outputs (none when absent or `null`); `None` when it is not strict JSON, or its top level or an output is not an object,
/// a key repeats, a read field has another type than the tree reads, or the data holds
/// an object: the caller then takes the tree path.
pub(super) fn summarize(body: &[u8]) -> Option<Vec<Output<'_>>> {
    read::object::<Top>(body).map(|Top(outputs)| outputs)
}

#[derive(Default)]
struct Top<'a>(Vec<Output<'a>>);

impl<'de> Fields<'de> for Top<'de> {
    const KEYS: &'static [&'static str] = &["outputs"];
    fn field<A: MapAccess<'de>>(&mut self, _: usize, map: &mut A) -> Result<(), A::Error> {
        let outputs: Option<Vec<Object<Output<'de>>>> = map.next_value()?;
        self.0 = outputs.into_iter().flatten().map(|Object(o)| o).collect();
        Ok(())
    }
}

impl<'de> Fields<'de> for Output<'de> {
    const KEYS: &'static [&'static str] = &["name", "shape", "datatype", "data"];
    fn field<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error> {
        match i {
            0 => self.name = map.next_value::<Option<Text>>()?.map(|t| t.0),
            1 => self.shape = map.next_value()?,
            2 => self.datatype = map.next_value::<Option<Text>>()?.map(|t| t.0),
            _ => {
                let mut leaves = Leaves::default();
                map.next_value_seed(LeavesSeed(&mut leaves))?;
                self.data = Some(leaves);
            }
        }
        Ok(())
    }
}

/// Counts the leaves of one value into the accumulator, recursing into arrays.
struct LeavesSeed<'l>(&'l mut Leaves);

impl LeavesSeed<'_> {
    fn tally<E>(self, leaf: Leaf) -> Result<(), E> {
        self.0.add(leaf);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for LeavesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LeavesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("tensor data")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(LeavesSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.tally(Leaf::Null)
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.tally(Leaf::Bool)
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.tally(Leaf::Str)
    }
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<(), E> {
        self.tally(Leaf::Int(n.into()))
    }
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<(), E> {
        self.tally(Leaf::Int(n.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.tally(Leaf::Float)
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        // An object fits no datatype; rare enough to leave to the tree path.
        Err(A::Error::custom("an object in tensor data"))
    }
}
