//! Splits template source into text, variable and block tokens, and splits
//! expression source into expression tokens.

use super::{ExprError, Syntax};

/// Whitespace accepted between code tokens.
pub fn is_code_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{a0}')
}

/// JavaScript `\s`, used by whitespace control.
pub fn is_js_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// Trims code whitespace on both ends.
pub fn trim_code(s: &str) -> &str {
    s.trim_matches(is_code_space)
}

/// Kinds of template tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokKind {
    Text,
    Variable,
    Block,
}

/// One template token; `line`/`col` are 1-based and point at its content.
#[derive(Debug, Clone)]
pub struct TemplateToken {
    pub kind: TokKind,
    pub value: String,
    pub line: u32,
    pub col: u32,
}

/// 1-based line and column of a byte offset.
pub fn position(src: &str, offset: usize) -> (u32, u32) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() as u32 + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
    (line, col)
}

fn syntax_error(src: &str, offset: usize, message: impl Into<String>) -> ExprError {
    let (line, column) = position(src, offset);
    ExprError::Syntax {
        line,
        column,
        message: message.into(),
    }
}

fn is_ident_start(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphabetic()
}

fn is_ident_continue(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

/// Scans an identifier at `start`; with `leading_digits`, digits may precede it.
pub fn scan_identifier(src: &str, start: usize, leading_digits: bool) -> Option<usize> {
    let bytes = src.as_bytes();
    let mut i = start;
    if leading_digits {
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i >= bytes.len() || !is_ident_start(bytes[i]) {
        return None;
    }
    i += 1;
    while i < bytes.len() && is_ident_continue(bytes[i]) {
        i += 1;
    }
    Some(i)
}

/// Scans a regex literal `r/.../flags` starting at the `r`; returns
/// `(source, flags, end)`.
pub fn scan_regex(
    src: &str,
    start: usize,
) -> Result<(String, String, usize), (usize, &'static str)> {
    let mut pattern = String::new();
    let mut backslashes = 0usize;
    for (off, c) in src[start + 2..].char_indices() {
        let idx = start + 2 + off;
        if c == '\\' {
            pattern.push(c);
            backslashes += 1;
            continue;
        }
        if c == '/' {
            if backslashes > 0 {
                if backslashes % 2 == 0 {
                    return Err((start, "Ambiguous regular-expression delimiter escape"));
                }
                pattern.push(c);
                backslashes = 0;
                continue;
            }
            let mut end = idx + 1;
            let mut flags = String::new();
            let bytes = src.as_bytes();
            while end < bytes.len() && matches!(bytes[end], b'g' | b'i' | b'm' | b'y') {
                let f = bytes[end] as char;
                if flags.contains(f) {
                    return Err((start, "Duplicate regular-expression flag"));
                }
                flags.push(f);
                end += 1;
            }
            if end < bytes.len() && bytes[end].is_ascii_alphabetic() {
                return Err((start, "Unsupported regular-expression flag"));
            }
            if pattern.len() > 16 * 1024 {
                return Err((
                    start,
                    "Regular-expression literal exceeds the maximum length",
                ));
            }
            return Ok((pattern, flags, end));
        }
        pattern.push(c);
        backslashes = 0;
    }
    Err((start, "Unterminated regular-expression literal"))
}

fn skip_quoted(src: &str, start: usize) -> Option<usize> {
    let bytes = src.as_bytes();
    let quote = *bytes.get(start)?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            return Some(i + 1);
        }
        i += 1;
    }
    Some(bytes.len())
}

/// Skips one string, identifier, regex literal or digit run at `i`.
fn skip_code_token(src: &str, i: usize) -> Option<usize> {
    if let Some(end) = skip_quoted(src, i) {
        return Some(end);
    }
    match scan_identifier(src, i, true) {
        Some(end) => {
            if &src[i..end] == "r" && src.as_bytes().get(end) == Some(&b'/') {
                Some(scan_regex(src, i).map_or(src.len(), |(_, _, e)| e))
            } else {
                Some(end)
            }
        }
        None => {
            let bytes = src.as_bytes();
            let mut end = i;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            (end > i).then_some(end)
        }
    }
}

/// Next char boundary after `i`.
fn next_boundary(src: &str, i: usize) -> usize {
    let mut j = i + 1;
    while j < src.len() && !src.is_char_boundary(j) {
        j += 1;
    }
    j
}

/// Finds `terminator` outside strings, identifiers and regex literals.
pub fn find_code_terminator(src: &str, start: usize, terminator: &str) -> Option<usize> {
    let mut i = start;
    while i + terminator.len() <= src.len() {
        if let Some(end) = skip_code_token(src, i) {
            i = end;
        } else if src[i..].starts_with(terminator) {
            return Some(i);
        } else {
            i = next_boundary(src, i);
        }
    }
    None
}

/// Index of the first top-level `expected` character in code.
pub fn find_top_level(src: &str, expected: u8) -> Option<usize> {
    let mut depth = 0i64;
    let mut i = 0;
    while i < src.len() {
        if let Some(end) = skip_code_token(src, i) {
            i = end;
            continue;
        }
        let b = src.as_bytes()[i];
        match b {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ if depth == 0 && b == expected => return Some(i),
            _ => {}
        }
        i = next_boundary(src, i);
    }
    None
}

/// Index of the delimiter closing the one at `start`.
pub fn find_matching(src: &str, start: usize) -> Option<usize> {
    let mut stack = vec![*src.as_bytes().get(start)?];
    let mut i = start + 1;
    while i < src.len() {
        if let Some(end) = skip_code_token(src, i) {
            i = end;
            continue;
        }
        let b = src.as_bytes()[i];
        match b {
            b'(' | b'[' | b'{' => stack.push(b),
            b')' | b']' | b'}' => {
                let expected = match stack.last() {
                    Some(b'(') => b')',
                    Some(b'[') => b']',
                    _ => b'}',
                };
                if b == expected {
                    stack.pop();
                    if stack.is_empty() {
                        return Some(i);
                    }
                }
            }
            _ => {}
        }
        i = next_boundary(src, i);
    }
    None
}

/// Splits code at a top-level keyword surrounded by whitespace (`for x in y`).
pub fn split_keyword<'a>(src: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let mut depth = 0i64;
    let mut i = 0;
    while i < src.len() {
        if let Some(end) = scan_identifier(src, i, true) {
            let word = &src[i..end];
            if word == "r" && src.as_bytes().get(end) == Some(&b'/') {
                i = scan_regex(src, i).map_or(src.len(), |(_, _, e)| e);
                continue;
            }
            let before = src[..i].chars().next_back().unwrap_or(' ');
            let after = src[end..].chars().next().unwrap_or(' ');
            if depth == 0 && word == keyword && is_code_space(before) && is_code_space(after) {
                return Some((trim_code(&src[..i]), trim_code(&src[end..])));
            }
            i = end;
            continue;
        }
        if let Some(end) = skip_code_token(src, i) {
            i = end;
            continue;
        }
        match src.as_bytes()[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        i = next_boundary(src, i);
    }
    None
}

/// The tag name of a block tag's content.
pub fn tag_name(value: &str) -> &str {
    let t = trim_code(value);
    let end = scan_identifier(t, 0, false).unwrap_or(0);
    &t[..end]
}

/// The content of a block tag after its name.
pub fn tag_rest(value: &str) -> &str {
    let t = trim_code(value);
    trim_code(&t[tag_name(t).len()..])
}

enum Opening {
    Variable,
    Block,
    Comment,
}

/// Splits a template into tokens, applying whitespace control and raw regions.
pub fn scan_template(src: &str, syntax: Syntax) -> Result<Vec<TemplateToken>, ExprError> {
    let mut tokens = Vec::new();
    let mut pending = String::new();
    let mut pending_at = 0usize;
    let mut i = 0usize;
    let var_start = syntax.variable_start;
    let var_end = syntax.variable_end;
    let flush = |pending: &mut String, at: usize, tokens: &mut Vec<TemplateToken>| {
        if !pending.is_empty() {
            let (line, col) = position(src, at);
            tokens.push(TemplateToken {
                kind: TokKind::Text,
                value: std::mem::take(pending),
                line,
                col,
            });
        }
    };
    while i < src.len() {
        let candidates = [
            (src[i..].find(var_start), Opening::Variable, var_start),
            (src[i..].find("{%"), Opening::Block, "{%"),
            (src[i..].find("{#"), Opening::Comment, "{#"),
        ];
        let opening = candidates
            .into_iter()
            .filter_map(|(pos, kind, text)| pos.map(|p| (i + p, kind, text)))
            .min_by_key(|(p, _, _)| *p);
        let stray = src[i..].find("#}").map(|p| i + p);
        if let Some(s) = stray {
            if opening.as_ref().is_none_or(|(p, _, _)| s < *p) {
                return Err(syntax_error(src, s, "Unexpected end of comment"));
            }
        }
        let Some((open_at, kind, open_text)) = opening else {
            if pending.is_empty() {
                pending_at = i;
            }
            pending.push_str(&src[i..]);
            break;
        };
        if pending.is_empty() {
            pending_at = i;
        }
        pending.push_str(&src[i..open_at]);
        let mut content_start = open_at + open_text.len();
        if src[content_start..].starts_with('-') {
            let trimmed = pending.trim_end_matches(is_js_space).len();
            pending.truncate(trimmed);
            content_start += 1;
        }
        flush(&mut pending, pending_at, &mut tokens);
        let close = match kind {
            Opening::Block => "%}",
            Opening::Comment => "#}",
            Opening::Variable => var_end,
        };
        let end = match kind {
            Opening::Comment => src[content_start..].find(close).map(|p| content_start + p),
            _ => find_code_terminator(src, content_start, close),
        };
        let Some(end) = end else {
            let what = match kind {
                Opening::Block => "block",
                Opening::Comment => "comment",
                Opening::Variable => "variable",
            };
            return Err(syntax_error(
                src,
                open_at,
                format!("Unterminated {what} tag"),
            ));
        };
        let right_trim = end > content_start && src.as_bytes()[end - 1] == b'-';
        let content = &src[content_start..if right_trim { end - 1 } else { end }];
        i = end + close.len();
        let skip_ws = |i: usize| -> usize {
            let rest = &src[i..];
            i + (rest.len() - rest.trim_start_matches(is_js_space).len())
        };
        match kind {
            Opening::Comment => {}
            Opening::Variable | Opening::Block => {
                let lead = content.len() - content.trim_start_matches(is_code_space).len();
                let value = if matches!(kind, Opening::Variable) {
                    &content[lead..]
                } else {
                    trim_code(content)
                };
                let (line, col) = position(src, content_start + lead);
                let name = if matches!(kind, Opening::Block) {
                    tag_name(value)
                } else {
                    ""
                };
                if name == "raw" || name == "verbatim" {
                    if !tag_rest(value).is_empty() {
                        return Err(syntax_error(
                            src,
                            open_at,
                            format!("{name} tag does not accept trailing content"),
                        ));
                    }
                    let Some((body_end, marker_end, line_break)) = find_raw_end(src, i, name)
                    else {
                        return Err(syntax_error(
                            src,
                            open_at,
                            format!("Missing \"end{name}\" tag"),
                        ));
                    };
                    if line_break {
                        return Err(syntax_error(
                            src,
                            body_end,
                            format!("{name} closing tag cannot contain a line break"),
                        ));
                    }
                    if pending.is_empty() {
                        pending_at = i;
                    }
                    pending.push_str(&src[i..body_end]);
                    i = marker_end;
                    if right_trim {
                        i = skip_ws(i);
                    }
                    continue;
                }
                tokens.push(TemplateToken {
                    kind: if matches!(kind, Opening::Variable) {
                        TokKind::Variable
                    } else {
                        TokKind::Block
                    },
                    value: value.to_string(),
                    line,
                    col,
                });
            }
        }
        if right_trim {
            i = skip_ws(i);
        }
    }
    flush(&mut pending, pending_at, &mut tokens);
    Ok(tokens)
}

/// Finds the end of a raw region: `(body_end, marker_end, marker_has_newline)`.
fn find_raw_end(src: &str, start: usize, name: &str) -> Option<(usize, usize, bool)> {
    let mut depth = 1;
    let mut i = start;
    let close_name = format!("end{name}");
    while i < src.len() {
        let marker = i + src[i..].find("{%")?;
        let mut j = marker + 2;
        if src[j..].starts_with('-') {
            i = marker + 2;
            continue;
        }
        let skip = |j: usize| j + (src[j..].len() - src[j..].trim_start_matches(is_js_space).len());
        j = skip(j);
        let open = if src[j..].starts_with(&close_name) {
            j += close_name.len();
            false
        } else if src[j..].starts_with(name) {
            j += name.len();
            true
        } else {
            i = marker + 2;
            continue;
        };
        j = skip(j);
        if !src[j..].starts_with("%}") {
            i = marker + 2;
            continue;
        }
        let end = j + 2;
        if open {
            depth += 1;
        } else {
            depth -= 1;
            if depth == 0 {
                return Some((marker, end, src[marker..end].contains('\n')));
            }
        }
        i = end;
    }
    None
}

/// Expression token kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Name(String),
    Num(f64),
    Str(String),
    Regex(String, String),
    Op(&'static str),
    Eof,
}

/// An expression token and its 1-based position.
#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub line: u32,
    pub col: u32,
}

const OPERATORS: [&str; 8] = ["===", "!==", "**", "//", "==", "!=", "<=", ">="];
const SINGLE: &str = "()[]{}.,:|~+-*/%<>=";

/// Tokenizes expression source starting at the given 1-based position.
pub fn tokenize(src: &str, line0: u32, col0: u32) -> Result<Vec<Token>, ExprError> {
    let mut out: Vec<Token> = Vec::new();
    let (mut line, mut col) = (line0, col0);
    let mut i = 0usize;
    let bytes = src.as_bytes();
    let err = |line: u32, col: u32, m: &str| ExprError::Syntax {
        line,
        column: col,
        message: m.to_string(),
    };
    while i < src.len() {
        let c = src[i..].chars().next().unwrap_or(' ');
        if is_code_space(c) {
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
            i += c.len_utf8();
            continue;
        }
        let (tl, tc) = (line, col);
        let prev = out.last().map(|t| &t.tok);
        let after_dot = prev == Some(&Tok::Op("."));
        if let Some(end) = scan_identifier(src, i, after_dot) {
            let word = &src[i..end];
            if word == "r" && bytes.get(end) == Some(&b'/') {
                let (source, flags, rend) = scan_regex(src, i).map_err(|(_, m)| err(tl, tc, m))?;
                if regex::Regex::new(&translate_regex(&source, "")).is_err() {
                    return Err(err(tl, tc, "Invalid regular-expression literal"));
                }
                col += src[i..rend].chars().count() as u32;
                i = rend;
                out.push(Token {
                    tok: Tok::Regex(source, flags),
                    line: tl,
                    col: tc,
                });
            } else {
                col += (end - i) as u32;
                i = end;
                out.push(Token {
                    tok: Tok::Name(word.to_string()),
                    line: tl,
                    col: tc,
                });
            }
            continue;
        }
        let after_operand = matches!(
            prev,
            Some(
                Tok::Name(_)
                    | Tok::Num(_)
                    | Tok::Str(_)
                    | Tok::Regex(..)
                    | Tok::Op(")" | "]" | "}")
            )
        );
        if c == '.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) && !after_operand {
            return Err(err(tl, tc, "Invalid numeric literal"));
        }
        if c.is_ascii_digit() {
            let mut end = i;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            if bytes.get(end) == Some(&b'.') {
                end += 1;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
            }
            if bytes
                .get(end)
                .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
            {
                return Err(err(tl, tc, "Invalid numeric literal"));
            }
            let text = src[i..end].trim_end_matches('.');
            let n = text.parse::<f64>().unwrap_or(f64::NAN);
            col += (end - i) as u32;
            i = end;
            out.push(Token {
                tok: Tok::Num(n),
                line: tl,
                col: tc,
            });
            continue;
        }
        if c == '"' || c == '\'' {
            let mut value = String::new();
            let mut chars = src[i + 1..].char_indices();
            let mut end = None;
            while let Some((off, ch)) = chars.next() {
                if ch == c {
                    end = Some(i + 1 + off + 1);
                    break;
                }
                if ch != '\\' {
                    value.push(ch);
                    continue;
                }
                match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 'r')) => value.push('\r'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, other)) => value.push(other),
                    None => break,
                }
            }
            let Some(end) = end else {
                return Err(err(tl, tc, "Unterminated string literal"));
            };
            for ch in src[i..end].chars() {
                if ch == '\n' {
                    line += 1;
                    col = 1;
                } else {
                    col += 1;
                }
            }
            i = end;
            out.push(Token {
                tok: Tok::Str(value),
                line: tl,
                col: tc,
            });
            continue;
        }
        let op = OPERATORS
            .iter()
            .find(|o| src[i..].starts_with(**o))
            .copied()
            .or_else(|| SINGLE.find(c).map(|p| &SINGLE[p..p + 1]));
        let Some(op) = op else {
            return Err(err(tl, tc, &format!("Unexpected character {c:?}")));
        };
        col += op.len() as u32;
        i += op.len();
        out.push(Token {
            tok: Tok::Op(op),
            line: tl,
            col: tc,
        });
    }
    out.push(Token {
        tok: Tok::Eof,
        line,
        col,
    });
    Ok(out)
}

/// Translates a JavaScript regex source to the `regex` crate's syntax, with
/// flags applied inline.
pub fn translate_regex(source: &str, flags: &str) -> String {
    let mut prefix = String::new();
    if flags.contains('i') {
        prefix.push('i');
    }
    if flags.contains('m') {
        prefix.push('m');
    }
    let body = source.replace("\\/", "/");
    if prefix.is_empty() {
        body
    } else {
        format!("(?{prefix}){body}")
    }
}
