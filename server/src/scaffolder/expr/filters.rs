//! The Nunjucks built-in filters and tests, with the JavaScript-flavoured
//! argument handling templates rely on.

use std::rc::Rc;

use super::ast::Expr;
use super::interp::{lookup_own, normalize_args, Interp};
use super::value::{self as v, Record, Value};
use super::{backstage, ExprError};

type R<T> = Result<T, ExprError>;

/// Names of the built-in filters.
pub const BUILTIN_FILTERS: [&str; 43] = [
    "abs",
    "batch",
    "capitalize",
    "center",
    "d",
    "default",
    "dictsort",
    "dump",
    "e",
    "escape",
    "first",
    "float",
    "forceescape",
    "groupby",
    "indent",
    "int",
    "join",
    "last",
    "length",
    "list",
    "lower",
    "nl2br",
    "random",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "string",
    "striptags",
    "sum",
    "title",
    "trim",
    "truncate",
    "upper",
    "urlencode",
    "urlize",
    "wordcount",
];

/// Whether `name` is a filter available with the given syntax mode.
pub fn is_known_filter(name: &str, compat: bool) -> bool {
    BUILTIN_FILTERS.contains(&name)
        || backstage::FILTERS.contains(&name)
        || (compat && name == "jsonify")
}

/// Arity of a built-in test, `None` when unknown.
pub fn test_arity(name: &str) -> Option<usize> {
    Some(match name {
        "callable" | "defined" | "escaped" | "even" | "falsy" | "iterable" | "lower"
        | "mapping" | "null" | "number" | "odd" | "string" | "truthy" | "undefined" | "upper" => 0,
        "divisibleby" | "eq" | "equalto" | "ge" | "greaterthan" | "gt" | "le" | "lessthan"
        | "lt" | "ne" | "sameas" => 1,
        _ => return None,
    })
}

fn err(e: &Expr, m: impl Into<String>) -> ExprError {
    ExprError::Runtime {
        line: e.line,
        column: e.col,
        message: m.into(),
    }
}

fn c<T>(e: &Expr, r: Result<T, v::CallableCoercion>) -> R<T> {
    r.map_err(|_| err(e, "Callable values cannot be used as data"))
}

fn arg(p: &[Value], i: usize) -> Value {
    p.get(i).cloned().unwrap_or_default()
}

fn copy_safeness(input: &Value, out: String) -> Value {
    if matches!(input, Value::Safe(_)) {
        Value::safe(out)
    } else {
        Value::str(out)
    }
}

fn normalize_text_input(input: &Value) -> Value {
    match input {
        Value::Undefined | Value::Null | Value::Bool(false) => Value::str(""),
        other => other.clone(),
    }
}

fn text<'a>(e: &Expr, input: &'a Value) -> R<&'a str> {
    input
        .text()
        .ok_or_else(|| err(e, "Filter input must be a string"))
}

fn direct_length(input: &Value) -> Value {
    match input {
        Value::Str(_) | Value::Safe(_) | Value::Array(_) => lookup_own(input, "length"),
        Value::Object(o) => o.get("length").cloned().unwrap_or_default(),
        _ => Value::Undefined,
    }
}

fn spaces(it: &Interp, n: f64) -> R<String> {
    if n.is_nan() || n <= 0.0 {
        return Ok(String::new());
    }
    if !n.is_finite() || n > 16.0 * 1024.0 * 1024.0 {
        return Err(ExprError::LimitExceeded {
            limit: super::LimitKind::ValueSize,
        });
    }
    let n = n.ceil() as usize;
    it.check_string(n)?;
    Ok(" ".repeat(n))
}

fn chars_of(s: &str) -> Vec<Value> {
    s.chars().map(|c| Value::str(c.to_string())).collect()
}

fn sequence(input: &Value) -> Option<Vec<Value>> {
    match input {
        Value::Array(a) => Some(a.as_ref().clone()),
        Value::Str(_) | Value::Safe(_) => Some(chars_of(input.text().unwrap_or(""))),
        _ => None,
    }
}

fn indexed_record_values(it: &Interp, e: &Expr, o: &Record) -> R<Vec<Value>> {
    let n = c(
        e,
        v::to_number(o.get("length").unwrap_or(&Value::Undefined)),
    )?;
    let count = if n.is_nan() || n <= 0.0 {
        0.0
    } else {
        n.ceil()
    };
    it.check_elements(count)?;
    Ok((0..count as u64)
        .map(|i| o.get(&i.to_string()).cloned().unwrap_or_default())
        .collect())
}

fn map_record_values(it: &Interp, e: &Expr, o: &Record) -> R<Vec<Value>> {
    if let Some(Value::Num(n)) = o.get("length") {
        if !n.is_nan() && (n.fract() != 0.0 || *n < 0.0 || *n > 4_294_967_295.0) {
            return Err(err(e, "Invalid array-like record length"));
        }
    }
    indexed_record_values(it, e, o)
}

fn attr_key(e: &Expr, value: &Value) -> R<String> {
    let k = c(e, v::to_js_string(value))?;
    if super::parser::is_reserved(&k) {
        return Err(err(e, format!("Template attribute {k} is reserved")));
    }
    Ok(k)
}

fn attr(e: &Expr, value: &Value, key: &str) -> R<Value> {
    if matches!(value, Value::Undefined | Value::Null) {
        return Err(err(
            e,
            "Cannot read a template attribute from a nullish value",
        ));
    }
    Ok(lookup_own(value, key))
}

fn getter_path(e: &Expr, value: &Value) -> R<Vec<String>> {
    if !value.truthy() {
        return Ok(Vec::new());
    }
    let path: Vec<String> = match value {
        Value::Str(s) => s.split('.').map(str::to_string).collect(),
        other => vec![c(e, v::to_js_string(other))?],
    };
    for seg in &path {
        if super::parser::is_reserved(seg) {
            return Err(err(e, format!("Template attribute {seg} is reserved")));
        }
    }
    Ok(path)
}

fn attr_path(e: &Expr, value: &Value, path: &[String]) -> R<Value> {
    let mut cur = value.clone();
    for seg in path {
        if matches!(cur, Value::Undefined | Value::Null) {
            return Err(err(
                e,
                "Cannot read a template attribute from a nullish value",
            ));
        }
        cur = lookup_own(&cur, seg);
    }
    Ok(cur)
}

fn js_lower(s: &str) -> String {
    s.to_lowercase()
}

fn js_upper(s: &str) -> String {
    s.to_uppercase()
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' => out.push_str("&#92;"),
            c => out.push(c),
        }
    }
    out
}

/// `encodeURIComponent`.
pub fn encode_uri_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn json_indent(value: &Value) -> String {
    match value {
        Value::Str(s) => s.chars().take(10).collect(),
        Value::Num(n) if !n.is_nan() && *n > 0.0 => " ".repeat(n.min(10.0).trunc() as usize),
        _ => String::new(),
    }
}

/// Applies filter `name` to `input`.
pub fn apply_filter(
    it: &mut Interp,
    e: &Expr,
    name: &str,
    input: Value,
    positional: Vec<Value>,
    keyword: Vec<(String, Value)>,
    compat: bool,
) -> R<Value> {
    if backstage::FILTERS.contains(&name) {
        if !keyword.is_empty() {
            return Err(err(
                e,
                format!("Filter {name} accepts positional arguments only"),
            ));
        }
        return backstage::apply(e, name, &input, &positional);
    }
    let name = if compat && name == "jsonify" {
        "dump"
    } else {
        name
    };
    if !BUILTIN_FILTERS.contains(&name) {
        return Err(ExprError::UnknownFilter {
            name: name.to_string(),
        });
    }
    if input.contains_callable()
        || positional.iter().any(Value::contains_callable)
        || keyword.iter().any(|(_, v)| v.contains_callable())
    {
        return Err(err(e, "Callable values cannot be passed to filters"));
    }
    // Nunjucks' calling convention: `int` and `sort` bind keywords to their
    // named parameters; other filters receive keywords as a trailing record.
    let p: Vec<Value> = match name {
        "int" => normalize_args(&["default", "base"], &[], positional, keyword).0,
        "sort" => {
            normalize_args(
                &["reverse", "case_sensitive", "attribute"],
                &[],
                positional,
                keyword,
            )
            .0
        }
        _ if keyword.is_empty() => positional,
        _ => {
            let mut p = positional;
            let mut entries: Vec<(Rc<str>, Value)> = keyword
                .into_iter()
                .map(|(k, v)| (Rc::from(k.as_str()), v))
                .collect();
            entries.push((Rc::from("__keywords"), Value::Bool(true)));
            p.push(Value::object(entries));
            p
        }
    };
    let out = builtin(it, e, name, &input, &p)?;
    match &out {
        Value::Str(s) => it.check_string(s.len())?,
        Value::Safe(s) => it.check_string(s.0.len())?,
        Value::Array(a) => it.check_elements(a.len() as f64)?,
        _ => {}
    }
    Ok(out)
}

fn builtin(it: &mut Interp, e: &Expr, name: &str, input: &Value, p: &[Value]) -> R<Value> {
    Ok(match name {
        "abs" => Value::Num(c(e, v::to_number(input))?.abs()),
        "batch" => batch(it, e, input, p)?,
        "capitalize" => {
            let t = js_lower(text(e, &normalize_text_input(input))?);
            let mut chars = t.chars();
            let out = match chars.next() {
                Some(f) => js_upper(&f.to_string()) + chars.as_str(),
                None => String::new(),
            };
            copy_safeness(input, out)
        }
        "center" => {
            let normalized = normalize_text_input(input);
            let width = if arg(p, 0).truthy() {
                arg(p, 0)
            } else {
                Value::Num(80.0)
            };
            let length = direct_length(&normalized);
            if matches!(
                c(e, v::order(&length, &width))?,
                Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
            ) {
                return Ok(normalized);
            }
            let n = c(e, v::to_number(&width))? - c(e, v::to_number(&length))?;
            let t = c(e, v::to_js_string(&normalized))?;
            let left = spaces(it, n / 2.0 - n % 2.0)?;
            let right = spaces(it, n / 2.0)?;
            copy_safeness(&normalized, format!("{left}{t}{right}"))
        }
        "default" | "d" => {
            let boolean = arg(p, 1);
            if boolean.truthy() {
                if input.truthy() {
                    input.clone()
                } else {
                    arg(p, 0)
                }
            } else if matches!(input, Value::Undefined) {
                arg(p, 0)
            } else {
                input.clone()
            }
        }
        "dictsort" => dictsort(e, input, p)?,
        "dump" => match c(e, v::to_json_string(input, &json_indent(&arg(p, 0))))? {
            Some(s) => Value::str(s),
            None => Value::Undefined,
        },
        "escape" | "e" => match input {
            Value::Safe(_) => input.clone(),
            other => Value::safe(escape_html(&c(e, v::render(other))?)),
        },
        "forceescape" => Value::safe(escape_html(&c(e, v::render(input))?)),
        "safe" => match input {
            Value::Safe(_) => input.clone(),
            other => Value::safe(c(e, v::render(other))?),
        },
        "first" | "last" => edge(e, input, name == "last")?,
        "float" => {
            let s = c(e, v::to_js_string(input))?;
            let n = parse_float(&s);
            if n.is_nan() {
                arg(p, 0)
            } else {
                Value::Num(n)
            }
        }
        "int" => {
            let base = match arg(p, 1) {
                Value::Undefined => 10.0,
                b => c(e, v::to_number(&b))?.trunc(),
            };
            let s = c(e, v::to_js_string(input))?;
            let n = parse_int(&s, base);
            if n.is_nan() {
                arg(p, 0)
            } else {
                Value::Num(n)
            }
        }
        "reverse" => match input {
            Value::Str(_) | Value::Safe(_) => {
                let t: String = input.text().unwrap_or("").chars().rev().collect();
                copy_safeness(input, t)
            }
            Value::Array(a) => Value::array(a.iter().rev().cloned().collect()),
            Value::Object(o) => {
                let mut vals = map_record_values(it, e, o)?;
                vals.reverse();
                Value::array(vals)
            }
            _ => Value::array(Vec::new()),
        },
        "groupby" => groupby(it, e, input, &arg(p, 0))?,
        "join" => join(it, e, input, p)?,
        "sum" => sum(it, e, input, p)?,
        "sort" => sort(it, e, input, p)?,
        "selectattr" | "rejectattr" => {
            let Value::Array(a) = input else {
                return Err(err(e, format!("{name} requires an array")));
            };
            let key = attr_key(e, &arg(p, 0))?;
            let select = name == "selectattr";
            let mut out = Vec::new();
            for x in a.iter() {
                if attr(e, x, &key)?.truthy() == select {
                    out.push(x.clone());
                }
            }
            Value::array(out)
        }
        "select" | "reject" => select(it, e, input, p, name == "select")?,
        "indent" => {
            let normalized = normalize_text_input(input);
            let t = text(e, &normalized)?;
            if matches!(&normalized, Value::Str(s) if s.is_empty()) {
                return Ok(Value::str(""));
            }
            let width = if arg(p, 0).truthy() {
                arg(p, 0)
            } else {
                Value::Num(4.0)
            };
            let first = arg(p, 1).truthy();
            let pad = spaces(it, c(e, v::to_number(&width))?)?;
            let lines: Vec<&str> = t.split('\n').collect();
            it.check_string(
                t.len()
                    .saturating_add(pad.len().saturating_mul(lines.len())),
            )?;
            let out: Vec<String> = lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    if i > 0 || first {
                        format!("{pad}{l}")
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            copy_safeness(&normalized, out.join("\n"))
        }
        "length" => match input {
            Value::Array(a) => Value::Num(a.len() as f64),
            Value::Object(o) => Value::Num(o.len() as f64),
            Value::Str(_) | Value::Safe(_) => {
                Value::Num(v::js_len(input.text().unwrap_or("")) as f64)
            }
            Value::Undefined | Value::Null | Value::Bool(false) => Value::Num(0.0),
            _ => Value::Undefined,
        },
        "list" => match input {
            Value::Array(_) => input.clone(),
            Value::Str(_) | Value::Safe(_) => Value::array(chars_of(input.text().unwrap_or(""))),
            Value::Object(o) => Value::array(
                o.entries()
                    .map(|(k, x)| {
                        Value::object([
                            (Rc::from("key"), Value::Str(k.clone())),
                            (Rc::from("value"), x.clone()),
                        ])
                    })
                    .collect(),
            ),
            _ => return Err(err(e, "list requires an iterable value")),
        },
        "lower" => Value::str(js_lower(text(e, &normalize_text_input(input))?)),
        "upper" => Value::str(js_upper(text(e, &normalize_text_input(input))?)),
        "nl2br" => {
            let t = match input {
                Value::Undefined | Value::Null => String::new(),
                other => text(e, other)?.to_string(),
            };
            copy_safeness(input, t.replace("\r\n", "\n").replace('\n', "<br />\n"))
        }
        "random" => random(it, e, input)?,
        "replace" => replace(e, input, p)?,
        "round" => {
            let precision = if arg(p, 0).truthy() {
                arg(p, 0)
            } else {
                Value::Num(0.0)
            };
            let factor = 10f64.powf(c(e, v::to_number(&precision))?);
            let x = c(e, v::to_number(input))? * factor;
            let r = match &arg(p, 1) {
                Value::Str(m) if &**m == "ceil" => x.ceil(),
                Value::Str(m) if &**m == "floor" => x.floor(),
                _ => js_round(x),
            };
            Value::Num(r / factor)
        }
        "slice" => slice(it, e, input, p)?,
        "string" => match input {
            Value::Undefined | Value::Null => return Err(err(e, "string requires a value")),
            Value::Safe(_) => input.clone(),
            other => Value::str(c(e, v::render(other))?),
        },
        "striptags" => {
            let normalized = normalize_text_input(input);
            let t = strip_tags(e, text(e, &normalized)?)?;
            let t = t.trim_matches(super::lexer::is_js_space);
            let out = if arg(p, 0).truthy() {
                let lines: Vec<String> = t
                    .split('\n')
                    .map(|l| l.trim_matches(' ').to_string())
                    .collect();
                let joined = lines.join("\n");
                let collapsed = collapse(&joined, |c| c == ' ', " ");
                let collapsed = collapsed.replace("\r\n", "\n");
                let mut s = collapsed;
                while s.contains("\n\n\n") {
                    s = s.replace("\n\n\n", "\n\n");
                }
                s
            } else {
                collapse(t, super::lexer::is_js_space, " ")
            };
            copy_safeness(input, out)
        }
        "title" => {
            let normalized = normalize_text_input(input);
            let t = text(e, &normalized)?;
            let words: Vec<String> = t
                .split(' ')
                .map(|w| {
                    let lower = js_lower(w);
                    let mut cs = lower.chars();
                    match cs.next() {
                        Some(f) => js_upper(&f.to_string()) + cs.as_str(),
                        None => String::new(),
                    }
                })
                .collect();
            copy_safeness(input, words.join(" "))
        }
        "trim" => copy_safeness(
            input,
            text(e, input)?
                .trim_matches(super::lexer::is_js_space)
                .to_string(),
        ),
        "truncate" => truncate(e, input, p)?,
        "urlencode" => Value::str(urlencode(e, input)?),
        "urlize" => Value::str(urlize(e, input, p)?),
        "wordcount" => {
            let normalized = normalize_text_input(input);
            if !normalized.truthy() {
                return Ok(Value::Null);
            }
            let t = text(e, &normalized)?;
            let mut count = 0usize;
            let mut in_word = false;
            for ch in t.chars() {
                let w = ch.is_ascii_alphanumeric() || ch == '_';
                if w && !in_word {
                    count += 1;
                }
                in_word = w;
            }
            if count == 0 {
                Value::Null
            } else {
                Value::Num(count as f64)
            }
        }
        _ => {
            return Err(ExprError::UnknownFilter {
                name: name.to_string(),
            })
        }
    })
}

fn collapse(s: &str, is_space: impl Fn(char) -> bool, with: &str) -> String {
    let mut out = String::new();
    let mut prev = false;
    for ch in s.chars() {
        if is_space(ch) {
            if !prev {
                out.push_str(with);
            }
            prev = true;
        } else {
            out.push(ch);
            prev = false;
        }
    }
    out
}

fn strip_tags(e: &Expr, s: &str) -> R<String> {
    let re = regex::Regex::new(r"(?i)</?([a-z][a-z0-9]*)\b[^>]*>|<!--[\s\S]*?-->")
        .map_err(|_| err(e, "internal regex error"))?;
    let mut cur = s.to_string();
    for _ in 0..8 {
        let next = re.replace_all(&cur, "").into_owned();
        if next == cur {
            return Ok(cur);
        }
        cur = next;
    }
    if re.is_match(&cur) {
        return Err(err(e, "striptags input contains excessively nested markup"));
    }
    Ok(cur)
}

/// `Math.round`: halves round towards +Infinity.
fn js_round(x: f64) -> f64 {
    let f = x.floor();
    if x - f >= 0.5 {
        f + 1.0
    } else {
        f
    }
}

/// `parseFloat`.
fn parse_float(s: &str) -> f64 {
    let t = s.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    let re = regex::Regex::new(r"^[+-]?(Infinity|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)");
    let Ok(re) = re else { return f64::NAN };
    match re.find(t) {
        Some(m) => {
            let txt = m.as_str();
            if txt.ends_with("Infinity") {
                if txt.starts_with('-') {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                }
            } else {
                txt.parse().unwrap_or(f64::NAN)
            }
        }
        None => f64::NAN,
    }
}

/// `parseInt(s, base)`.
fn parse_int(s: &str, base: f64) -> f64 {
    let mut t = s.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    let mut neg = false;
    if let Some(r) = t.strip_prefix('-') {
        neg = true;
        t = r;
    } else if let Some(r) = t.strip_prefix('+') {
        t = r;
    }
    let mut radix = if base.is_nan() || base == 0.0 {
        0
    } else {
        base as i64
    };
    if radix != 0 && !(2..=36).contains(&radix) {
        return f64::NAN;
    }
    if (radix == 0 || radix == 16) && (t.starts_with("0x") || t.starts_with("0X")) {
        t = &t[2..];
        radix = 16;
    }
    if radix == 0 {
        radix = 10;
    }
    let mut value = 0f64;
    let mut any = false;
    for ch in t.chars() {
        let Some(d) = ch.to_digit(radix as u32) else {
            break;
        };
        value = value * radix as f64 + f64::from(d);
        any = true;
    }
    if !any {
        return f64::NAN;
    }
    if neg {
        -value
    } else {
        value
    }
}

fn batch(it: &Interp, e: &Expr, input: &Value, p: &[Value]) -> R<Value> {
    if matches!(input, Value::Undefined | Value::Null) {
        return Err(err(e, "batch requires a sequence"));
    }
    let width = c(e, v::to_number(&arg(p, 0)))?.trunc();
    if !(width > 0.0 && width <= 9_007_199_254_740_991.0) {
        return Err(err(e, "Batch size must be a positive integer"));
    }
    let values = match input {
        Value::Object(o) => indexed_record_values(it, e, o)?,
        other => match sequence(other) {
            Some(v) => v,
            None => return Ok(Value::array(Vec::new())),
        },
    };
    let width = width as usize;
    let fill = arg(p, 1);
    let mut out = Vec::new();
    for chunk in values.chunks(width) {
        let mut row = chunk.to_vec();
        if row.len() < width && fill.truthy() {
            it.check_elements(width as f64)?;
            row.resize(width, fill.clone());
        }
        out.push(Value::array(row));
    }
    Ok(Value::array(out))
}

fn dictsort(e: &Expr, input: &Value, p: &[Value]) -> R<Value> {
    let Value::Object(o) = input else {
        return Err(err(e, "dictsort requires a record"));
    };
    let case_sensitive = arg(p, 0).truthy();
    let by_value = match arg(p, 1) {
        Value::Undefined => false,
        Value::Str(s) if &*s == "key" => false,
        Value::Str(s) if &*s == "value" => true,
        _ => return Err(err(e, "dictsort can only sort by key or value")),
    };
    let mut entries: Vec<(Value, Value)> = o
        .entries()
        .map(|(k, x)| (Value::Str(k.clone()), x.clone()))
        .collect();
    let norm = |x: &Value| -> Value {
        match x {
            Value::Str(_) | Value::Safe(_) if !case_sensitive => {
                Value::str(js_upper(x.text().unwrap_or("")))
            }
            other => other.clone(),
        }
    };
    let mut failed = false;
    // The comparator is not a total order for mixed values; insertion sort
    // mirrors a stable merge of pairwise decisions without panicking.
    let cmp = |a: &(Value, Value), b: &(Value, Value), failed: &mut bool| -> std::cmp::Ordering {
        let (x, y) = if by_value {
            (norm(&a.1), norm(&b.1))
        } else {
            (norm(&a.0), norm(&b.0))
        };
        match v::order(&x, &y) {
            Ok(Some(std::cmp::Ordering::Greater)) => std::cmp::Ordering::Greater,
            Ok(_) if v::strict_equal(&x, &y) => std::cmp::Ordering::Equal,
            Ok(_) => std::cmp::Ordering::Less,
            Err(_) => {
                *failed = true;
                std::cmp::Ordering::Equal
            }
        }
    };
    stable_sort(&mut entries, |a, b| cmp(a, b, &mut failed));
    if failed {
        return Err(err(e, "Callable values cannot be sorted"));
    }
    Ok(Value::array(
        entries
            .into_iter()
            .map(|(k, x)| Value::array(vec![k, x]))
            .collect(),
    ))
}

/// A stable merge sort that tolerates inconsistent comparators.
fn stable_sort<T: Clone>(items: &mut [T], mut cmp: impl FnMut(&T, &T) -> std::cmp::Ordering) {
    fn merge_sort<T: Clone>(items: &mut [T], cmp: &mut dyn FnMut(&T, &T) -> std::cmp::Ordering) {
        let n = items.len();
        if n <= 1 {
            return;
        }
        let mid = n / 2;
        merge_sort(&mut items[..mid], cmp);
        merge_sort(&mut items[mid..], cmp);
        let left = items[..mid].to_vec();
        let right = items[mid..].to_vec();
        let (mut i, mut j, mut k) = (0, 0, 0);
        while i < left.len() && j < right.len() {
            if cmp(&right[j], &left[i]) == std::cmp::Ordering::Less {
                items[k] = right[j].clone();
                j += 1;
            } else {
                items[k] = left[i].clone();
                i += 1;
            }
            k += 1;
        }
        for x in left[i..].iter().chain(right[j..].iter()) {
            items[k] = x.clone();
            k += 1;
        }
    }
    merge_sort(items, &mut cmp);
}

fn edge(e: &Expr, input: &Value, last: bool) -> R<Value> {
    Ok(match input {
        Value::Undefined | Value::Null => {
            return Err(err(
                e,
                format!(
                    "{} requires a sequence",
                    if last { "last" } else { "first" }
                ),
            ))
        }
        Value::Array(a) => (if last { a.last() } else { a.first() })
            .cloned()
            .unwrap_or_default(),
        Value::Str(_) | Value::Safe(_) => {
            let t = input.text().unwrap_or("");
            (if last {
                t.chars().next_back()
            } else {
                t.chars().next()
            })
            .map(|ch| Value::str(ch.to_string()))
            .unwrap_or_default()
        }
        Value::Object(o) => {
            if !last {
                return Ok(o.get("0").cloned().unwrap_or_default());
            }
            let n = c(
                e,
                v::to_number(o.get("length").unwrap_or(&Value::Undefined)),
            )? - 1.0;
            o.get(&v::format_number(n)).cloned().unwrap_or_default()
        }
        _ => Value::Undefined,
    })
}

fn random(_it: &Interp, e: &Expr, input: &Value) -> R<Value> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let pick = |n: usize| -> usize {
        let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n.max(1) as u64) as usize
    };
    Ok(match input {
        Value::Undefined | Value::Null => return Err(err(e, "random requires a sequence")),
        Value::Object(o) => {
            let n = c(
                e,
                v::to_number(o.get("length").unwrap_or(&Value::Undefined)),
            )?;
            if n.is_finite() && n >= 1.0 && n.fract() == 0.0 {
                o.get(&pick(n as usize).to_string())
                    .cloned()
                    .unwrap_or_default()
            } else {
                Value::Undefined
            }
        }
        other => match sequence(other) {
            Some(vals) if !vals.is_empty() => vals[pick(vals.len())].clone(),
            _ => Value::Undefined,
        },
    })
}

fn groupby(it: &Interp, e: &Expr, input: &Value, attribute: &Value) -> R<Value> {
    if matches!(input, Value::Undefined | Value::Null) {
        return Err(err(e, "groupby requires a sequence"));
    }
    let values = match input {
        Value::Object(o) => indexed_record_values(it, e, o)?,
        other => match sequence(other) {
            Some(v) => v,
            None => return Ok(Value::object(Vec::new())),
        },
    };
    let path = getter_path(e, attribute)?;
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    for x in values {
        let key = c(e, v::to_js_string(&attr_path(e, &x, &path)?))?;
        if super::parser::is_reserved(&key) {
            return Err(err(e, format!("Template record key {key} is reserved")));
        }
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(x),
            None => groups.push((key, vec![x])),
        }
    }
    Ok(Value::object(
        groups
            .into_iter()
            .map(|(k, g)| (Rc::from(k.as_str()), Value::array(g))),
    ))
}

fn optional_attr(e: &Expr, value: &Value) -> R<Option<String>> {
    if !value.truthy() {
        return Ok(None);
    }
    attr_key(e, value).map(Some)
}

fn project(it: &Interp, e: &Expr, input: &Value, key: &str) -> R<Vec<Value>> {
    Ok(match input {
        Value::Array(a) => a.iter().map(|x| attr(e, x, key)).collect::<R<_>>()?,
        Value::Str(s) => chars_of(s)
            .iter()
            .map(|x| attr(e, x, key))
            .collect::<R<_>>()?,
        Value::Object(o) => map_record_values(it, e, o)?
            .iter()
            .map(|x| attr(e, x, key))
            .collect::<R<_>>()?,
        Value::Safe(s) if !s.0.is_empty() => {
            attr(e, &Value::Undefined, key)?;
            Vec::new()
        }
        _ => Vec::new(),
    })
}

fn join(it: &Interp, e: &Expr, input: &Value, p: &[Value]) -> R<Value> {
    let sep = if arg(p, 0).truthy() {
        c(e, v::to_js_string(&arg(p, 0)))?
    } else {
        String::new()
    };
    let items = match optional_attr(e, &arg(p, 1))? {
        None => match input {
            Value::Array(a) => a.as_ref().clone(),
            _ => return Err(err(e, "join requires an array")),
        },
        Some(key) => project(it, e, input, &key)?,
    };
    let mut parts = Vec::with_capacity(items.len());
    let mut total = 0usize;
    for x in &items {
        let s = match x {
            Value::Undefined | Value::Null => String::new(),
            other => c(e, v::to_js_string(other))?,
        };
        total = total.saturating_add(s.len() + sep.len());
        it.check_string(total)?;
        parts.push(s);
    }
    Ok(Value::str(parts.join(&sep)))
}

fn sum(it: &Interp, e: &Expr, input: &Value, p: &[Value]) -> R<Value> {
    let items = match optional_attr(e, &arg(p, 0))? {
        None => match input {
            Value::Array(a) => a.as_ref().clone(),
            _ => return Err(err(e, "sum requires an array")),
        },
        Some(key) => project(it, e, input, &key)?,
    };
    let mut acc = Value::Num(0.0);
    for x in &items {
        acc = c(e, v::add(&acc, x))?;
        if let Value::Str(s) = &acc {
            it.check_string(s.len())?;
        }
    }
    let start = match arg(p, 1) {
        Value::Undefined => Value::Num(0.0),
        s => s,
    };
    c(e, v::add(&start, &acc))
}

fn sort(it: &Interp, e: &Expr, input: &Value, p: &[Value]) -> R<Value> {
    let mut values = match input {
        Value::Object(o) => map_record_values(it, e, o)?,
        other => match sequence(other) {
            Some(v) => v,
            None => return Ok(Value::array(Vec::new())),
        },
    };
    let reverse = arg(p, 0).truthy();
    let case_sensitive = arg(p, 1).truthy();
    let path = getter_path(e, &arg(p, 2))?;
    // Like `Array.prototype.sort`, undefined items go last uncompared.
    let undefined = values
        .iter()
        .filter(|x| matches!(x, Value::Undefined))
        .count();
    values.retain(|x| !matches!(x, Value::Undefined));
    let mut keyed: Vec<(Value, Value)> = Vec::with_capacity(values.len());
    for x in values.drain(..) {
        let k = attr_path(e, &x, &path)?;
        keyed.push((k, x));
    }
    let mut failed = false;
    stable_sort(&mut keyed, |a, b| {
        let (mut l, mut r) = (a.0.clone(), b.0.clone());
        if !case_sensitive && l.is_stringish() && r.is_stringish() {
            l = Value::str(js_lower(l.text().unwrap_or("")));
            r = Value::str(js_lower(r.text().unwrap_or("")));
        }
        match v::order(&l, &r) {
            Ok(Some(std::cmp::Ordering::Less)) => {
                if reverse {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Less
                }
            }
            Ok(Some(std::cmp::Ordering::Greater)) => {
                if reverse {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            }
            Ok(_) => std::cmp::Ordering::Equal,
            Err(_) => {
                failed = true;
                std::cmp::Ordering::Equal
            }
        }
    });
    if failed {
        return Err(err(e, "Callable values cannot be sorted"));
    }
    let mut out: Vec<Value> = keyed.into_iter().map(|(_, x)| x).collect();
    out.extend(std::iter::repeat_n(Value::Undefined, undefined));
    Ok(Value::array(out))
}

fn select(it: &Interp, e: &Expr, input: &Value, p: &[Value], keep: bool) -> R<Value> {
    let test = match arg(p, 0) {
        Value::Undefined => "truthy".to_string(),
        t => c(e, v::to_js_string(&t))?,
    };
    let Some(arity) = test_arity(&test) else {
        return Err(ExprError::UnknownTest { name: test });
    };
    if matches!(input, Value::Undefined | Value::Null) {
        return Err(err(
            e,
            format!(
                "{} requires a sequence",
                if keep { "select" } else { "reject" }
            ),
        ));
    }
    let values = match input {
        Value::Object(o) => {
            let n = c(
                e,
                v::to_number(o.get("length").unwrap_or(&Value::Undefined)),
            )?;
            let count = if n.is_nan() || n <= 0.0 {
                0.0
            } else {
                n.floor()
            };
            it.check_elements(count)?;
            (0..count as u64)
                .filter_map(|i| o.get(&i.to_string()).cloned())
                .collect()
        }
        other => match sequence(other) {
            Some(v) => v,
            None => return Ok(Value::array(Vec::new())),
        },
    };
    let args = p.get(1..).unwrap_or(&[]);
    if args.len() != arity {
        return Err(err(
            e,
            format!(
                "Template test {test} requires {arity} positional argument{}",
                if arity == 1 { "" } else { "s" }
            ),
        ));
    }
    let mut out = Vec::new();
    for x in values {
        if apply_test(e, &test, &x, args)? == keep {
            out.push(x);
        }
    }
    Ok(Value::array(out))
}

fn replace(e: &Expr, input: &Value, p: &[Value]) -> R<Value> {
    let search = arg(p, 0);
    let replacement = arg(p, 1);
    let maximum = match arg(p, 2) {
        Value::Undefined => Value::Num(-1.0),
        m => m,
    };
    if let Value::Regex(r) = &search {
        // The `regex` crate matches in linear time, so template-controlled
        // patterns cannot cause catastrophic backtracking.
        let Some(t) = input.text() else {
            return Err(err(e, "Regular-expression replacement requires a string"));
        };
        let re = regex::Regex::new(&super::lexer::translate_regex(&r.source, &r.flags))
            .map_err(|_| err(e, "Unsupported regular expression"))?;
        let rep = c(e, v::to_js_string(&replacement))?;
        let out = if r.flags.contains('g') {
            re.replace_all(t, regex::NoExpand(&rep))
        } else {
            re.replace(t, regex::NoExpand(&rep))
        };
        return Ok(Value::str(out.into_owned()));
    }
    if !matches!(search, Value::Str(_) | Value::Num(_)) {
        return Ok(input.clone());
    }
    let coerced = match input {
        Value::Num(_) => Value::str(c(e, v::to_js_string(input))?),
        other => other.clone(),
    };
    let Some(t) = coerced.text().map(str::to_string) else {
        return Ok(coerced);
    };
    let needle = c(e, v::to_js_string(&search))?;
    let rep = c(e, v::to_js_string(&replacement))?;
    if needle.is_empty() {
        let sep = if matches!(replacement, Value::Undefined) {
            ","
        } else {
            rep.as_str()
        };
        let chars: Vec<String> = t.chars().map(|ch| ch.to_string()).collect();
        return Ok(copy_safeness(
            &coerced,
            format!("{rep}{}{rep}", chars.join(sep)),
        ));
    }
    let is_zero = matches!(maximum, Value::Num(n) if n == 0.0);
    if is_zero || !t.contains(&needle) {
        return Ok(coerced);
    }
    if matches!(maximum, Value::Num(n) if n == -1.0) {
        return Ok(copy_safeness(input, t.replace(&needle, &rep)));
    }
    let max = c(e, v::to_number(&maximum))?;
    let mut out = String::new();
    let mut rest = t.as_str();
    let mut count = 0f64;
    while count < max {
        let Some(i) = rest.find(&needle) else { break };
        out.push_str(&rest[..i]);
        out.push_str(&rep);
        rest = &rest[i + needle.len()..];
        count += 1.0;
    }
    out.push_str(rest);
    Ok(copy_safeness(input, out))
}

fn slice(it: &Interp, e: &Expr, input: &Value, p: &[Value]) -> R<Value> {
    let Some(values) = sequence(input) else {
        return Err(err(e, "slice requires a sequence"));
    };
    let count = c(e, v::to_number(&arg(p, 0)))?.trunc();
    if !(count > 0.0 && count <= 9_007_199_254_740_991.0) {
        return Err(err(e, "Slice count must be a positive integer"));
    }
    it.check_elements(count)?;
    let count = count as usize;
    let base = values.len() / count;
    let extra = values.len() % count;
    let fill = arg(p, 1);
    let is_text = input.is_stringish();
    let mut out = Vec::new();
    let mut offset = 0;
    for i in 0..count {
        let len = base + usize::from(i < extra);
        let part = values[offset..offset + len].to_vec();
        offset += len;
        if is_text {
            if fill.truthy() && i >= extra {
                return Err(err(e, "slice cannot append a fill value to a string"));
            }
            let s: String = part
                .iter()
                .filter_map(|x| x.text().map(str::to_string))
                .collect();
            out.push(Value::str(s));
        } else {
            let mut part = part;
            if fill.truthy() && i >= extra {
                part.push(fill.clone());
            }
            out.push(Value::array(part));
        }
    }
    Ok(Value::array(out))
}

fn truncate(e: &Expr, input: &Value, p: &[Value]) -> R<Value> {
    let normalized = normalize_text_input(input);
    let length_value = if arg(p, 0).truthy() {
        arg(p, 0)
    } else {
        Value::Num(255.0)
    };
    let input_length = direct_length(&normalized);
    if matches!(
        c(e, v::order(&input_length, &length_value))?,
        Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
    ) {
        return Ok(normalized);
    }
    let t = text(e, &normalized)?;
    let units: Vec<u16> = t.encode_utf16().collect();
    let length = c(e, v::to_number(&length_value))?;
    let clamp = |n: f64| -> usize {
        if n.is_nan() || n < 0.0 {
            0
        } else {
            (n.trunc() as usize).min(units.len())
        }
    };
    let truncated = if arg(p, 1).truthy() {
        String::from_utf16_lossy(&units[..clamp(length)])
    } else {
        let from = if length.is_nan() {
            units.len()
        } else {
            clamp(length)
        };
        let space = units[..(from + 1).min(units.len())]
            .iter()
            .rposition(|u| *u == u16::from(b' '));
        String::from_utf16_lossy(&units[..space.unwrap_or(clamp(length))])
    };
    let end = match arg(p, 2) {
        Value::Undefined | Value::Null => "...".to_string(),
        x => c(e, v::to_js_string(&x))?,
    };
    Ok(copy_safeness(input, truncated + &end))
}

fn urlencode(e: &Expr, input: &Value) -> R<String> {
    let pair = |k: &Value, x: &Value| -> R<String> {
        Ok(format!(
            "{}={}",
            encode_uri_component(&c(e, v::to_js_string(k))?),
            encode_uri_component(&c(e, v::to_js_string(x))?)
        ))
    };
    Ok(match input {
        Value::Str(_) | Value::Safe(_) => encode_uri_component(input.text().unwrap_or("")),
        Value::Object(o) => o
            .entries()
            .map(|(k, x)| pair(&Value::Str(k.clone()), x))
            .collect::<R<Vec<_>>>()?
            .join("&"),
        Value::Array(a) => {
            let mut parts = Vec::new();
            for x in a.iter() {
                let (k, val) = match x {
                    Value::Undefined | Value::Null => {
                        return Err(err(e, "urlencode sequence entries cannot be nullish"))
                    }
                    Value::Array(_) | Value::Object(_) | Value::Str(_) | Value::Safe(_) => {
                        (lookup_own(x, "0"), lookup_own(x, "1"))
                    }
                    _ => (Value::Undefined, Value::Undefined),
                };
                parts.push(pair(&k, &val)?);
            }
            parts.join("&")
        }
        _ => String::new(),
    })
}

fn urlize(e: &Expr, input: &Value, p: &[Value]) -> R<String> {
    let length = match arg(p, 0) {
        Value::Undefined => f64::INFINITY,
        Value::Num(n) if n.is_nan() => f64::INFINITY,
        x => {
            let n = c(e, v::to_number(&x))?;
            if n.is_nan() || n <= 0.0 {
                0.0
            } else {
                n.trunc()
            }
        }
    };
    let nofollow = if matches!(arg(p, 1), Value::Bool(true)) {
        " rel=\"nofollow\""
    } else {
        ""
    };
    let t = text(e, input)?;
    let punct = regex::Regex::new(r"(?s)^(?:\(|<|&lt;)?(.*?)(?:\.|,|\)|\n|&gt;)?$")
        .map_err(|_| err(e, "internal regex error"))?;
    let email = regex::Regex::new(r"(?i)^[\w.!#$%&'*+\-/=?^`{|}~]+@[a-z\d-]+(?:\.[a-z\d-]+)+$")
        .map_err(|_| err(e, "internal regex error"))?;
    let domain = regex::Regex::new(r"\.(?:org|net|com)(?::|/|$)")
        .map_err(|_| err(e, "internal regex error"))?;
    let mut out = String::new();
    let mut word = String::new();
    let mut words: Vec<String> = Vec::new();
    let mut in_space = None;
    for ch in t.chars() {
        let sp = super::lexer::is_js_space(ch);
        if in_space.is_some_and(|s| s != sp) {
            words.push(std::mem::take(&mut word));
        }
        in_space = Some(sp);
        word.push(ch);
    }
    words.push(word);
    for w in words.into_iter().filter(|w| !w.is_empty()) {
        let possible = punct
            .captures(&w)
            .and_then(|m| m.get(1))
            .map_or(w.as_str(), |m| m.as_str())
            .to_string();
        let short: String = if length.is_infinite() {
            possible.clone()
        } else {
            possible.chars().take(length as usize).collect()
        };
        if possible.starts_with("http://") || possible.starts_with("https://") {
            out.push_str(&format!("<a href=\"{possible}\"{nofollow}>{short}</a>"));
        } else if possible.starts_with("www.") {
            out.push_str(&format!(
                "<a href=\"http://{possible}\"{nofollow}>{short}</a>"
            ));
        } else if email.is_match(&possible) {
            out.push_str(&format!("<a href=\"mailto:{possible}\">{possible}</a>"));
        } else if domain.is_match(&possible) {
            out.push_str(&format!(
                "<a href=\"http://{possible}\"{nofollow}>{short}</a>"
            ));
        } else {
            out.push_str(&w);
        }
    }
    Ok(out)
}

/// Applies test `name` to `input`.
pub fn apply_test(e: &Expr, name: &str, input: &Value, p: &[Value]) -> R<bool> {
    let needs_data = !matches!(name, "callable" | "eq" | "equalto" | "sameas" | "ne");
    if needs_data && (input.contains_callable() || p.iter().any(Value::contains_callable)) {
        return Err(err(e, "Callable values cannot be coerced"));
    }
    let num = |x: &Value| c(e, v::to_number(x));
    let ord = |a: &Value, b: &Value| c(e, v::order(a, b));
    use std::cmp::Ordering::*;
    Ok(match name {
        "callable" => matches!(input, Value::Callable(_)),
        "defined" => !matches!(input, Value::Undefined),
        "divisibleby" => num(input)? % num(&arg(p, 0))? == 0.0,
        "escaped" => matches!(input, Value::Safe(_)),
        "eq" | "equalto" | "sameas" => p.len() == 1 && v::strict_equal(input, &p[0]),
        "ne" => p.len() != 1 || !v::strict_equal(input, &p[0]),
        "even" => num(input)? % 2.0 == 0.0,
        "odd" => num(input)? % 2.0 == 1.0,
        "falsy" => !input.truthy(),
        "truthy" => input.truthy(),
        "ge" => matches!(ord(input, &arg(p, 0))?, Some(Greater | Equal)),
        "gt" | "greaterthan" => ord(input, &arg(p, 0))? == Some(Greater),
        "le" => matches!(ord(input, &arg(p, 0))?, Some(Less | Equal)),
        "lt" | "lessthan" => ord(input, &arg(p, 0))? == Some(Less),
        "iterable" => match input {
            Value::Undefined | Value::Null => return Err(err(e, "iterable test requires a value")),
            Value::Str(_) | Value::Safe(_) | Value::Array(_) => true,
            _ => false,
        },
        "lower" => match input {
            Value::Safe(_) => false,
            other => {
                let t = text(e, other)?;
                js_lower(t) == t
            }
        },
        "upper" => match input {
            Value::Safe(_) => false,
            other => {
                let t = text(e, other)?;
                js_upper(t) == t
            }
        },
        "mapping" => matches!(input, Value::Object(_) | Value::Safe(_) | Value::Regex(_)),
        "null" => matches!(input, Value::Null),
        "number" => matches!(input, Value::Num(_)),
        "string" => matches!(input, Value::Str(_)),
        "undefined" => matches!(input, Value::Undefined),
        other => {
            return Err(ExprError::UnknownTest {
                name: other.to_string(),
            })
        }
    })
}
