//! JavaScript-like runtime values with the coercion rules templates observe.
//!
//! Values are cheap to clone (containers are reference counted) and immutable
//! once built, except the state of `cycler`/`joiner` objects.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::rc::Rc;

use super::ast::MacroDef;

/// One runtime value.
#[derive(Clone, Debug, Default)]
pub enum Value {
    /// JavaScript `undefined`: missing names and members.
    #[default]
    Undefined,
    /// `null` / `none`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A double-precision number.
    Num(f64),
    /// A plain string.
    Str(Rc<str>),
    /// A string marked safe (`| safe`, macro output); compared by identity.
    Safe(Rc<SafeStr>),
    /// An array.
    Array(Rc<Vec<Value>>),
    /// A record (plain object).
    Object(Rc<Record>),
    /// An inert regular-expression literal.
    Regex(Rc<RegexLit>),
    /// A callable handle.
    Callable(Rc<Callable>),
}

/// The payload of a safe string.
#[derive(Debug)]
pub struct SafeStr(pub String);

/// A regular-expression literal: source and canonical flags.
#[derive(Debug)]
pub struct RegexLit {
    pub source: String,
    pub flags: String,
}

/// Callable values. Identity matters (`is sameas`), so they live behind `Rc`.
#[derive(Debug, Clone)]
pub enum Callable {
    Macro(Rc<MacroClosure>),
    Range,
    CyclerCtor,
    JoinerCtor,
    Cycler(Rc<CyclerState>),
    CyclerNext(Rc<CyclerState>),
    CyclerReset(Rc<CyclerState>),
    Joiner(Rc<JoinerState>),
}

/// A macro or call-block body together with the scope it was defined in.
#[derive(Debug)]
pub struct MacroClosure {
    pub def: std::sync::Arc<MacroDef>,
    pub scope: super::interp::ScopeRef,
    /// Set for `caller` bodies: they see the scope of the call site directly.
    pub is_caller: bool,
}

/// State of one `cycler(...)`.
#[derive(Debug)]
pub struct CyclerState {
    pub values: Vec<Value>,
    pub index: Cell<i64>,
}

/// State of one `joiner(...)`.
#[derive(Debug)]
pub struct JoinerState {
    pub separator: Value,
    pub used: Cell<bool>,
}

/// An ordered record with JavaScript property order: canonical array indices
/// first in ascending order, then other keys in insertion order.
#[derive(Debug, Default)]
pub struct Record {
    keys: Vec<Rc<str>>,
    map: HashMap<Rc<str>, Value>,
}

impl Record {
    /// Builds a record from entries; later duplicates overwrite the value but
    /// keep the first position, like a JavaScript object literal.
    pub fn from_entries(entries: impl IntoIterator<Item = (Rc<str>, Value)>) -> Record {
        let mut rec = Record::default();
        let mut indexed: Vec<(u32, Rc<str>)> = Vec::new();
        let mut named: Vec<Rc<str>> = Vec::new();
        for (k, v) in entries {
            if rec.map.insert(k.clone(), v).is_none() {
                match canonical_index(&k) {
                    Some(i) => indexed.push((i, k)),
                    None => named.push(k),
                }
            }
        }
        indexed.sort_by_key(|(i, _)| *i);
        rec.keys = indexed.into_iter().map(|(_, k)| k).chain(named).collect();
        rec
    }

    /// The value of one own key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    /// Whether the key exists.
    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Entries in property order.
    pub fn entries(&self) -> impl Iterator<Item = (&Rc<str>, &Value)> {
        self.keys
            .iter()
            .filter_map(move |k| self.map.get(k).map(|v| (k, v)))
    }
}

/// Whether `key` is a canonical array index (`"0"`, `"12"`, < 2^32 - 1).
pub fn canonical_index(key: &str) -> Option<u32> {
    if key.is_empty() || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    if !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse::<u64>()
        .ok()
        .filter(|n| *n < 4_294_967_295)
        .map(|n| n as u32)
}

impl Value {
    /// A plain string value.
    pub fn str(s: impl Into<Rc<str>>) -> Value {
        Value::Str(s.into())
    }

    /// A safe string value.
    pub fn safe(s: String) -> Value {
        Value::Safe(Rc::new(SafeStr(s)))
    }

    /// An array value.
    pub fn array(v: Vec<Value>) -> Value {
        Value::Array(Rc::new(v))
    }

    /// A record value.
    pub fn object(entries: impl IntoIterator<Item = (Rc<str>, Value)>) -> Value {
        Value::Object(Rc::new(Record::from_entries(entries)))
    }

    /// Converts JSON data into a runtime value.
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Num(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::str(s.as_str()),
            serde_json::Value::Array(a) => Value::array(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::object(
                o.iter()
                    .map(|(k, v)| (Rc::from(k.as_str()), Value::from_json(v))),
            ),
        }
    }

    /// JavaScript truthiness (safe strings are objects, hence always truthy).
    pub fn truthy(&self) -> bool {
        match self {
            Value::Undefined | Value::Null => false,
            Value::Bool(b) => *b,
            Value::Num(n) => *n != 0.0 && !n.is_nan(),
            Value::Str(s) => !s.is_empty(),
            _ => true,
        }
    }

    /// Whether the value is a plain or safe string.
    pub fn is_stringish(&self) -> bool {
        matches!(self, Value::Str(_) | Value::Safe(_))
    }

    /// The text of a plain or safe string.
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Safe(s) => Some(&s.0),
            _ => None,
        }
    }

    /// Whether a callable is reachable anywhere inside the value.
    pub fn contains_callable(&self) -> bool {
        match self {
            Value::Callable(_) => true,
            Value::Array(a) => a.iter().any(Value::contains_callable),
            Value::Object(o) => o.entries().any(|(_, v)| v.contains_callable()),
            _ => false,
        }
    }

    /// A short description of the kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Undefined => "undefined",
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Num(_) => "number",
            Value::Str(_) => "string",
            Value::Safe(_) => "safe string",
            Value::Array(_) => "array",
            Value::Object(_) => "record",
            Value::Regex(_) => "regular expression",
            Value::Callable(_) => "callable",
        }
    }
}

/// A primitive produced by `ToPrimitive`.
#[derive(Clone, Debug)]
pub enum Prim {
    Undefined,
    Null,
    Bool(bool),
    Num(f64),
    Str(Rc<str>),
}

/// Errors of coercion: a callable reached a place that needs data.
#[derive(Debug)]
pub struct CallableCoercion;

/// JavaScript `ToPrimitive` over template values.
pub fn to_primitive(v: &Value) -> Result<Prim, CallableCoercion> {
    Ok(match v {
        Value::Undefined => Prim::Undefined,
        Value::Null => Prim::Null,
        Value::Bool(b) => Prim::Bool(*b),
        Value::Num(n) => Prim::Num(*n),
        Value::Str(s) => Prim::Str(s.clone()),
        Value::Safe(s) => Prim::Str(Rc::from(s.0.as_str())),
        Value::Array(a) => {
            let mut out = String::new();
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if !matches!(item, Value::Undefined | Value::Null) {
                    out.push_str(&to_js_string(item)?);
                }
            }
            Prim::Str(Rc::from(out))
        }
        Value::Object(_) => Prim::Str(Rc::from("[object Object]")),
        Value::Regex(r) => Prim::Str(Rc::from(regex_to_string(r))),
        Value::Callable(_) => return Err(CallableCoercion),
    })
}

/// JavaScript `ToString` of a primitive.
pub fn prim_to_string(p: &Prim) -> String {
    match p {
        Prim::Undefined => "undefined".into(),
        Prim::Null => "null".into(),
        Prim::Bool(b) => b.to_string(),
        Prim::Num(n) => format_number(*n),
        Prim::Str(s) => s.to_string(),
    }
}

/// JavaScript `ToNumber` of a primitive.
pub fn prim_to_number(p: &Prim) -> f64 {
    match p {
        Prim::Undefined => f64::NAN,
        Prim::Null => 0.0,
        Prim::Bool(b) => f64::from(u8::from(*b)),
        Prim::Num(n) => *n,
        Prim::Str(s) => string_to_number(s),
    }
}

/// JavaScript `ToString` of any value.
pub fn to_js_string(v: &Value) -> Result<String, CallableCoercion> {
    Ok(prim_to_string(&to_primitive(v)?))
}

/// JavaScript `ToNumber` of any value.
pub fn to_number(v: &Value) -> Result<f64, CallableCoercion> {
    Ok(prim_to_number(&to_primitive(v)?))
}

/// JavaScript string-to-number conversion (`Number("...")`).
pub fn string_to_number(s: &str) -> f64 {
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if t.is_empty() {
        return 0.0;
    }
    let (neg, body) = match t.as_bytes()[0] {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let radix = |prefix: &str, radix: u32| -> Option<f64> {
        let digits = body
            .strip_prefix(prefix)
            .or_else(|| body.strip_prefix(&prefix.to_uppercase()))?;
        if digits.is_empty() || t.starts_with(['-', '+']) {
            return Some(f64::NAN);
        }
        Some(
            u128::from_str_radix(digits, radix)
                .map(|n| n as f64)
                .unwrap_or(f64::NAN),
        )
    };
    for (p, r) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(n) = radix(p, r) {
            return n;
        }
    }
    let magnitude = if body == "Infinity" {
        f64::INFINITY
    } else if body
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && body
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.')
    {
        body.parse::<f64>().unwrap_or(f64::NAN)
    } else {
        f64::NAN
    };
    if neg {
        -magnitude
    } else {
        magnitude
    }
}

/// Formats a number exactly like JavaScript's `Number.prototype.toString()`.
pub fn format_number(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if n == 0.0 {
        return "0".into();
    }
    let sci = format!("{:e}", n.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let e = exp + 1;
    let mut out = String::new();
    if n < 0.0 {
        out.push('-');
    }
    if k <= e && e <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (e - k) as usize));
    } else if 0 < e && e <= 21 {
        out.push_str(&digits[..e as usize]);
        out.push('.');
        out.push_str(&digits[e as usize..]);
    } else if -6 < e && e <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-e) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{}", if e > 0 { "+" } else { "-" }, (e - 1).abs());
    }
    out
}

/// The canonical `/source/flags` spelling of a regex literal.
pub fn regex_to_string(r: &RegexLit) -> String {
    let mut source = String::new();
    if r.source.is_empty() {
        source.push_str("(?:)");
    }
    for c in r.source.chars() {
        match c {
            '\n' => source.push_str("\\n"),
            '\r' => source.push_str("\\r"),
            '\u{2028}' => source.push_str("\\u2028"),
            '\u{2029}' => source.push_str("\\u2029"),
            c => source.push(c),
        }
    }
    let flags: String = "gimy".chars().filter(|f| r.flags.contains(*f)).collect();
    format!("/{source}/{flags}")
}

/// How a value renders into template output (`undefined`/`null` render as "").
pub fn render(v: &Value) -> Result<String, CallableCoercion> {
    match v {
        Value::Undefined | Value::Null => Ok(String::new()),
        Value::Array(a) => {
            let mut out = String::new();
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&render(item)?);
            }
            Ok(out)
        }
        Value::Callable(_) => Err(CallableCoercion),
        other => to_js_string(other),
    }
}

/// JavaScript `===`.
pub fn strict_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Undefined, Value::Undefined) | (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Num(x), Value::Num(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Safe(x), Value::Safe(y)) => Rc::ptr_eq(x, y),
        (Value::Array(x), Value::Array(y)) => Rc::ptr_eq(x, y),
        (Value::Object(x), Value::Object(y)) => Rc::ptr_eq(x, y),
        (Value::Regex(x), Value::Regex(y)) => Rc::ptr_eq(x, y),
        (Value::Callable(x), Value::Callable(y)) => Rc::ptr_eq(x, y),
        _ => false,
    }
}

fn is_primitive(v: &Value) -> bool {
    matches!(
        v,
        Value::Undefined | Value::Null | Value::Bool(_) | Value::Num(_) | Value::Str(_)
    )
}

/// JavaScript `==`.
pub fn loose_equal(a: &Value, b: &Value) -> Result<bool, CallableCoercion> {
    if strict_equal(a, b) {
        return Ok(true);
    }
    if !is_primitive(a) && !is_primitive(b) {
        return Ok(false);
    }
    Ok(prim_loose_equal(&to_primitive(a)?, &to_primitive(b)?))
}

fn prim_loose_equal(a: &Prim, b: &Prim) -> bool {
    use Prim::*;
    match (a, b) {
        (Undefined | Null, Undefined | Null) => true,
        (Undefined | Null, _) | (_, Undefined | Null) => false,
        (Num(x), Num(y)) => x == y,
        (Str(x), Str(y)) => x == y,
        (Bool(x), Bool(y)) => x == y,
        (Bool(x), other) => prim_loose_equal(&Num(f64::from(u8::from(*x))), other),
        (other, Bool(y)) => prim_loose_equal(other, &Num(f64::from(u8::from(*y)))),
        (Num(x), Str(y)) => *x == string_to_number(y),
        (Str(x), Num(y)) => string_to_number(x) == *y,
    }
}

/// JavaScript `+`: string concatenation when either side is a string.
pub fn add(a: &Value, b: &Value) -> Result<Value, CallableCoercion> {
    let pa = to_primitive(a)?;
    let pb = to_primitive(b)?;
    if matches!(pa, Prim::Str(_)) || matches!(pb, Prim::Str(_)) {
        let mut s = prim_to_string(&pa);
        s.push_str(&prim_to_string(&pb));
        return Ok(Value::str(s));
    }
    Ok(Value::Num(prim_to_number(&pa) + prim_to_number(&pb)))
}

/// Relational ordering: `Some(Less|Equal|Greater)`, or `None` when unordered.
pub fn order(a: &Value, b: &Value) -> Result<Option<std::cmp::Ordering>, CallableCoercion> {
    let pa = to_primitive(a)?;
    let pb = to_primitive(b)?;
    if let (Prim::Str(x), Prim::Str(y)) = (&pa, &pb) {
        return Ok(Some(cmp_utf16(x, y)));
    }
    Ok(prim_to_number(&pa).partial_cmp(&prim_to_number(&pb)))
}

/// Compares strings by UTF-16 code units, like JavaScript.
pub fn cmp_utf16(a: &str, b: &str) -> std::cmp::Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Length in UTF-16 code units, like JavaScript's `length`.
pub fn js_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Serialises like `JSON.stringify(value, null, indent)`; `None` for `undefined`.
pub fn to_json_string(v: &Value, indent: &str) -> Result<Option<String>, CallableCoercion> {
    let mut out = String::new();
    if write_json(v, indent, 0, &mut out)? {
        Ok(Some(out))
    } else {
        Ok(None)
    }
}

fn write_json(
    v: &Value,
    indent: &str,
    level: usize,
    out: &mut String,
) -> Result<bool, CallableCoercion> {
    match v {
        Value::Undefined => return Ok(false),
        Value::Callable(_) => return Err(CallableCoercion),
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Num(n) => {
            if n.is_finite() {
                out.push_str(&format_number(*n))
            } else {
                out.push_str("null")
            }
        }
        Value::Str(s) => json_quote(s, out),
        Value::Safe(s) => json_quote(&s.0, out),
        Value::Regex(_) => out.push_str("{}"),
        Value::Array(a) => {
            if a.is_empty() {
                out.push_str("[]");
                return Ok(true);
            }
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline_indent(indent, level + 1, out);
                if !write_json(item, indent, level + 1, out)? {
                    out.push_str("null");
                }
            }
            newline_indent(indent, level, out);
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            let mut first = true;
            for (k, item) in o.entries() {
                if matches!(item, Value::Undefined) {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                newline_indent(indent, level + 1, out);
                json_quote(k, out);
                out.push(':');
                if !indent.is_empty() {
                    out.push(' ');
                }
                write_json(item, indent, level + 1, out)?;
            }
            if !first {
                newline_indent(indent, level, out);
            }
            out.push('}');
        }
    }
    Ok(true)
}

fn newline_indent(indent: &str, level: usize, out: &mut String) {
    if !indent.is_empty() {
        out.push('\n');
        for _ in 0..level {
            out.push_str(indent);
        }
    }
}

/// Quotes a string like `JSON.stringify`.
pub fn json_quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
