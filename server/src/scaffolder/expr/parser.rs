//! Parses template tokens into statements and expression source into
//! expressions, bounding nesting depth.

use std::sync::Arc;

use super::ast::{Args, BinOp, CmpOp, Expr, ExprKind, Lit, MacroDef, Node};
use super::lexer::{
    find_matching, find_top_level, scan_template, split_keyword, tag_name, tag_rest, tokenize,
    trim_code, TemplateToken, Tok, TokKind, Token,
};
use super::{ExprError, LimitKind, Syntax};

/// Names that can never be used, to keep prototype-style gadgets out.
pub fn is_reserved(name: &str) -> bool {
    matches!(name, "constructor" | "prototype" | "__proto__")
}

/// Parses a whole template.
pub fn parse_template(src: &str, syntax: Syntax, max_depth: usize) -> Result<Vec<Node>, ExprError> {
    let tokens = scan_template(src, syntax)?;
    let mut p = TemplateParser {
        tokens,
        index: 0,
        depth: 0,
        max_depth,
    };
    let (body, stop) = p.body(&[])?;
    if let Some(stop) = stop {
        return Err(fail(
            &stop,
            format!("Unexpected \"{}\" tag", tag_name(&stop.value)),
        ));
    }
    Ok(body)
}

fn fail(tok: &TemplateToken, message: impl Into<String>) -> ExprError {
    ExprError::Syntax {
        line: tok.line,
        column: tok.col,
        message: message.into(),
    }
}

const STRUCTURAL: [&str; 13] = [
    "else",
    "endif",
    "endfor",
    "endmacro",
    "endcall",
    "endfilter",
    "endset",
    "default",
    "endswitch",
    "elif",
    "elseif",
    "case",
    "endblock",
];
const EMPTY_STRUCTURAL: [&str; 9] = [
    "else",
    "endif",
    "endfor",
    "endmacro",
    "endcall",
    "endfilter",
    "endset",
    "default",
    "endswitch",
];

struct TemplateParser {
    tokens: Vec<TemplateToken>,
    index: usize,
    depth: usize,
    max_depth: usize,
}

type Body = (Vec<Node>, Option<TemplateToken>);

impl TemplateParser {
    fn body(&mut self, stops: &[&str]) -> Result<Body, ExprError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(ExprError::LimitExceeded {
                limit: LimitKind::Depth,
            });
        }
        let result = self.body_contents(stops);
        self.depth -= 1;
        result
    }

    fn body_contents(&mut self, stops: &[&str]) -> Result<Body, ExprError> {
        let mut children = Vec::new();
        while self.index < self.tokens.len() {
            let tok = self.tokens[self.index].clone();
            self.index += 1;
            match tok.kind {
                TokKind::Text => children.push(Node::Text(tok.value)),
                TokKind::Variable => children.push(Node::Output(self.expr(&tok.value, &tok)?)),
                TokKind::Block => {
                    let name = tag_name(&tok.value);
                    if stops.contains(&name) {
                        if EMPTY_STRUCTURAL.contains(&name) && !tag_rest(&tok.value).is_empty() {
                            return Err(fail(
                                &tok,
                                format!("{name} tag does not accept trailing content"),
                            ));
                        }
                        return Ok((children, Some(tok)));
                    }
                    if STRUCTURAL.contains(&name) {
                        return Err(fail(&tok, format!("Unexpected \"{name}\" tag")));
                    }
                    let name = name.to_string();
                    children.push(self.statement(&name, &tok)?);
                }
            }
        }
        Ok((children, None))
    }

    fn expect_stop(
        &mut self,
        stops: &[&str],
        opener: &TemplateToken,
        end: &str,
    ) -> Result<(Vec<Node>, TemplateToken), ExprError> {
        let (body, stop) = self.body(stops)?;
        match stop {
            Some(s) => Ok((body, s)),
            None => Err(fail(opener, format!("Missing {end} tag"))),
        }
    }

    fn statement(&mut self, name: &str, tok: &TemplateToken) -> Result<Node, ExprError> {
        let rest = tag_rest(&tok.value).to_string();
        match name {
            "if" => self.parse_if(&rest, tok),
            "for" => {
                let Some((left, right)) = split_keyword(&rest, "in") else {
                    return Err(fail(tok, "For tag requires an in expression"));
                };
                let targets = self.targets(left, tok)?;
                if targets.len() == 1 && targets[0] == "loop" {
                    return Err(fail(tok, "A single loop target cannot be named loop"));
                }
                let iter = self.expr(right, tok)?;
                let (body, stop) = self.expect_stop(&["else", "endfor"], tok, "endfor")?;
                let otherwise = if tag_name(&stop.value) == "else" {
                    Some(self.expect_stop(&["endfor"], tok, "endfor")?.0)
                } else {
                    None
                };
                Ok(Node::For {
                    targets,
                    iter,
                    body,
                    otherwise,
                })
            }
            "set" => {
                if let Some(eq) = find_top_level(&rest, b'=') {
                    let targets = self.targets(&rest[..eq], tok)?;
                    let value = self.expr(&rest[eq + 1..], tok)?;
                    return Ok(Node::Set(targets, value));
                }
                let targets = self.targets(&rest, tok)?;
                let (body, _) = self.expect_stop(&["endset"], tok, "endset")?;
                if contains_macro(&body) {
                    return Err(fail(tok, "Macro declarations are not supported inside set captures"));
                }
                Ok(Node::SetBlock(targets, body))
            }
            "macro" => {
                let sig = trim_code(&rest);
                let name_end = super::lexer::scan_identifier(sig, 0, false).unwrap_or(0);
                let name = &sig[..name_end];
                let params = trim_code(&sig[name_end..]);
                if name.is_empty() || !params.starts_with('(') || !params.ends_with(')') {
                    return Err(fail(tok, "Invalid macro signature"));
                }
                self.check_name(name, tok)?;
                let (positional, defaults) = self.signature(&params[1..params.len() - 1], tok)?;
                let (body, _) = self.expect_stop(&["endmacro"], tok, "endmacro")?;
                Ok(Node::Macro(Arc::new(MacroDef {
                    name: name.to_string(),
                    positional,
                    defaults,
                    body,
                })))
            }
            "call" => {
                let mut src = trim_code(&rest);
                let mut caller_args = "";
                if src.starts_with('(') {
                    let Some(close) = find_matching(src, 0) else {
                        return Err(fail(tok, "Invalid call-block arguments"));
                    };
                    caller_args = &src[1..close];
                    src = trim_code(&src[close + 1..]);
                }
                let call = self.expr(src, tok)?;
                let ExprKind::Call(target, args) = call.kind else {
                    return Err(fail(tok, "Call block requires a function call"));
                };
                if !static_call_target(&target) {
                    return Err(fail(tok, "Call block target must be a static macro reference"));
                }
                let (positional, defaults) = self.signature(caller_args, tok)?;
                let (body, _) = self.expect_stop(&["endcall"], tok, "endcall")?;
                Ok(Node::CallBlock {
                    target: *target,
                    args,
                    caller: Arc::new(MacroDef {
                        name: "caller".into(),
                        positional,
                        defaults,
                        body,
                    }),
                })
            }
            "filter" => {
                let (body, _) = self.expect_stop(&["endfilter"], tok, "endfilter")?;
                if contains_macro(&body) {
                    return Err(fail(tok, "Macro declarations are not supported inside filter captures"));
                }
                let mut p = ExprParser::new(&rest, tok, self.max_depth)?;
                let capture = Expr {
                    kind: ExprKind::Capture(body),
                    line: tok.line,
                    col: tok.col,
                };
                let filter = p.filter_invocation(capture)?;
                p.expect_eof()?;
                Ok(Node::Output(filter))
            }
            "block" => {
                let name = trim_code(&rest);
                if super::lexer::scan_identifier(name, 0, false) != Some(name.len()) {
                    return Err(fail(tok, "Block name must be an identifier"));
                }
                let (body, stop) = self.expect_stop(&["endblock"], tok, "endblock")?;
                let closing = tag_rest(&stop.value);
                if !closing.is_empty() && closing != name {
                    return Err(fail(&stop, "Endblock name must match its opening block"));
                }
                Ok(Node::Block(body))
            }
            "switch" => {
                let expr = self.expr(&rest, tok)?;
                let stops = ["case", "default", "endswitch"];
                let (first, mut stop) = self.body(&stops)?;
                if !first.is_empty() {
                    return Err(fail(tok, "Switch content must begin with case or default"));
                }
                let mut cases = Vec::new();
                let mut default = None;
                while let Some(s) = stop.clone().filter(|s| tag_name(&s.value) == "case") {
                    let cond = self.expr(tag_rest(&s.value), &s)?;
                    let (body, next) = self.body(&stops)?;
                    cases.push((cond, body));
                    stop = next;
                }
                if stop.as_ref().is_some_and(|s| tag_name(&s.value) == "default") {
                    let (body, next) = self.body(&["endswitch"])?;
                    default = Some(body);
                    stop = next;
                }
                if stop.is_none_or(|s| tag_name(&s.value) != "endswitch") {
                    return Err(fail(tok, "Missing endswitch tag"));
                }
                if cases.is_empty() && default.is_none() {
                    return Err(fail(tok, "Switch requires at least one case or default"));
                }
                Ok(Node::Switch {
                    expr,
                    cases,
                    default,
                })
            }
            "include" | "import" | "from" | "extends" => Err(fail(
                tok,
                format!("Unsupported template-loading tag \"{name}\": templates cannot load other templates"),
            )),
            "" => Err(fail(tok, "Template block tag cannot be empty")),
            other => Err(fail(tok, format!("Unknown template tag \"{other}\""))),
        }
    }

    fn parse_if(&mut self, cond: &str, tok: &TemplateToken) -> Result<Node, ExprError> {
        let cond = self.expr(cond, tok)?;
        let (body, stop) = self.expect_stop(&["elif", "elseif", "else", "endif"], tok, "endif")?;
        let otherwise = match tag_name(&stop.value) {
            "elif" | "elseif" => {
                let rest = tag_rest(&stop.value).to_string();
                Some(vec![self.parse_if(&rest, &stop)?])
            }
            "else" => Some(self.expect_stop(&["endif"], tok, "endif")?.0),
            _ => None,
        };
        Ok(Node::If(cond, body, otherwise))
    }

    fn check_name(&self, name: &str, tok: &TemplateToken) -> Result<(), ExprError> {
        if is_reserved(name) {
            return Err(fail(tok, format!("Template name \"{name}\" is reserved")));
        }
        Ok(())
    }

    fn expr(&self, src: &str, tok: &TemplateToken) -> Result<Expr, ExprError> {
        let mut p = ExprParser::new(src, tok, self.max_depth)?;
        let e = p.inline_if()?;
        p.expect_eof()?;
        Ok(e)
    }

    fn targets(&self, src: &str, tok: &TemplateToken) -> Result<Vec<String>, ExprError> {
        let mut p = ExprParser::new(src, tok, self.max_depth)?;
        let mut out = Vec::new();
        loop {
            let t = p.next();
            match t.tok.clone() {
                Tok::Name(n) if !matches!(n.as_str(), "true" | "false" | "null" | "none") => {
                    p.check_name(&n, &t)?;
                    out.push(n);
                }
                _ => return Err(p.error_at(&t, "Binding targets must be ordinary names")),
            }
            if !p.eat_op(",") {
                break;
            }
        }
        p.expect_eof()?;
        Ok(out)
    }

    #[allow(clippy::type_complexity)]
    fn signature(
        &self,
        src: &str,
        tok: &TemplateToken,
    ) -> Result<(Vec<String>, Vec<(String, Expr)>), ExprError> {
        if trim_code(src).is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let with_paren = format!("{src})");
        let mut p = ExprParser::new(&with_paren, tok, self.max_depth)?;
        let args = p.arguments(")")?;
        p.expect_eof()?;
        let mut positional = Vec::new();
        for a in args.positional {
            match a.kind {
                ExprKind::Sym(n) => positional.push(n),
                _ => return Err(p.error_pos(a.line, a.col, "Formal parameters must be names")),
            }
        }
        Ok((positional, args.keyword))
    }
}

fn contains_macro(nodes: &[Node]) -> bool {
    nodes.iter().any(|n| match n {
        Node::Macro(_) => true,
        Node::If(_, a, b) => contains_macro(a) || b.as_deref().is_some_and(contains_macro),
        Node::For {
            body, otherwise, ..
        } => contains_macro(body) || otherwise.as_deref().is_some_and(contains_macro),
        Node::SetBlock(_, b) | Node::Block(b) => contains_macro(b),
        Node::CallBlock { caller, .. } => contains_macro(&caller.body),
        Node::Switch { cases, default, .. } => {
            cases.iter().any(|(_, b)| contains_macro(b))
                || default.as_deref().is_some_and(contains_macro)
        }
        _ => false,
    })
}

fn static_call_target(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Sym(_) => true,
        ExprKind::Lookup(t, k) => {
            static_call_target(t)
                && matches!(k.kind, ExprKind::Lit(ref l) if !matches!(l, Lit::Regex { .. }))
        }
        _ => false,
    }
}

/// Recursive-descent expression parser following the Nunjucks grammar.
pub struct ExprParser {
    tokens: Vec<Token>,
    index: usize,
    depth: usize,
    max_depth: usize,
    ops: usize,
}

impl ExprParser {
    fn new(src: &str, tok: &TemplateToken, max_depth: usize) -> Result<ExprParser, ExprError> {
        let offset = tok.value.find(src).unwrap_or(0);
        let (mut line, mut col) = (tok.line, tok.col);
        for c in tok.value[..offset].chars() {
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        Ok(ExprParser {
            tokens: tokenize(src, line, col)?,
            index: 0,
            depth: 0,
            max_depth,
            ops: 0,
        })
    }

    fn peek(&self) -> &Token {
        let i = self.index.min(self.tokens.len() - 1);
        &self.tokens[i]
    }

    fn peek_at(&self, n: usize) -> &Token {
        let i = (self.index + n).min(self.tokens.len() - 1);
        &self.tokens[i]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        self.index += 1;
        t
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek().tok, Tok::Op(o) if o == op) {
            self.index += 1;
            return true;
        }
        false
    }

    fn eat_name(&mut self, name: &str) -> bool {
        if matches!(&self.peek().tok, Tok::Name(n) if n == name) {
            self.index += 1;
            return true;
        }
        false
    }

    fn error_pos(&self, line: u32, column: u32, m: impl Into<String>) -> ExprError {
        ExprError::Syntax {
            line,
            column,
            message: m.into(),
        }
    }

    fn error_at(&self, t: &Token, m: impl Into<String>) -> ExprError {
        self.error_pos(t.line, t.col, m)
    }

    fn error(&self, m: impl Into<String>) -> ExprError {
        self.error_at(self.peek(), m)
    }

    fn describe(t: &Tok) -> String {
        match t {
            Tok::Name(n) => format!("\"{n}\""),
            Tok::Num(n) => super::value::format_number(*n),
            Tok::Str(s) => format!("{s:?}"),
            Tok::Regex(s, f) => format!("r/{s}/{f}"),
            Tok::Op(o) => format!("\"{o}\""),
            Tok::Eof => "end of input".into(),
        }
    }

    fn expect_op(&mut self, op: &str) -> Result<(), ExprError> {
        if self.eat_op(op) {
            return Ok(());
        }
        Err(self.error(format!(
            "Expected {op}, received {}",
            Self::describe(&self.peek().tok)
        )))
    }

    fn expect_eof(&mut self) -> Result<(), ExprError> {
        if self.peek().tok == Tok::Eof {
            return Ok(());
        }
        Err(self.error(format!(
            "Expected end of expression, received {}",
            Self::describe(&self.peek().tok)
        )))
    }

    fn check_name(&self, n: &str, t: &Token) -> Result<(), ExprError> {
        if is_reserved(n) {
            return Err(self.error_at(t, format!("Template name \"{n}\" is reserved")));
        }
        Ok(())
    }

    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ExprError>,
    ) -> Result<T, ExprError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(ExprError::LimitExceeded {
                limit: LimitKind::Depth,
            });
        }
        let r = f(self);
        self.depth -= 1;
        r
    }

    fn mk(&self, kind: ExprKind, at: (u32, u32)) -> Expr {
        Expr {
            kind,
            line: at.0,
            col: at.1,
        }
    }

    fn pos(e: &Expr) -> (u32, u32) {
        (e.line, e.col)
    }

    /// Chained operators can nest the tree without recursion; bound them too.
    fn chain(&mut self) -> Result<(), ExprError> {
        self.ops += 1;
        if self.ops > self.max_depth * 8 {
            return Err(ExprError::LimitExceeded {
                limit: LimitKind::Depth,
            });
        }
        Ok(())
    }

    fn inline_if(&mut self) -> Result<Expr, ExprError> {
        let body = self.or()?;
        if !self.eat_name("if") {
            return Ok(body);
        }
        let cond = self.or()?;
        let otherwise = if self.eat_name("else") {
            Some(Box::new(self.nested(|p| p.or())?))
        } else {
            None
        };
        let at = Self::pos(&body);
        Ok(self.mk(
            ExprKind::InlineIf(Box::new(cond), Box::new(body), otherwise),
            at,
        ))
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.and()?;
        while self.eat_name("or") {
            self.chain()?;
            let right = self.and()?;
            let at = Self::pos(&left);
            left = self.mk(ExprKind::Or(Box::new(left), Box::new(right)), at);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.not()?;
        while self.eat_name("and") {
            self.chain()?;
            let right = self.not()?;
            let at = Self::pos(&left);
            left = self.mk(ExprKind::And(Box::new(left), Box::new(right)), at);
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ExprError> {
        let t = self.peek().clone();
        if self.eat_name("not") {
            let target = self.nested(|p| p.not())?;
            return Ok(Self::lower_not(target, (t.line, t.col)));
        }
        self.membership()
    }

    /// `not` binds like Nunjucks: it applies to the leftmost operand of
    /// arithmetic and comparison chains.
    fn lower_not(target: Expr, at: (u32, u32)) -> Expr {
        let kind = match target.kind {
            ExprKind::Bin(op, l, r) if op != BinOp::Pow => {
                ExprKind::Bin(op, Box::new(Self::lower_not(*l, at)), r)
            }
            ExprKind::Compare(l, ops) => ExprKind::Compare(Box::new(Self::lower_not(*l, at)), ops),
            other => ExprKind::Not(Box::new(Expr {
                kind: other,
                line: target.line,
                col: target.col,
            })),
        };
        Expr {
            kind,
            line: at.0,
            col: at.1,
        }
    }

    fn membership(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.test()?;
        loop {
            let negate = matches!(&self.peek().tok, Tok::Name(x) if x == "not")
                && matches!(&self.peek_at(1).tok, Tok::Name(x) if x == "in");
            if negate {
                self.index += 2;
            } else if !self.eat_name("in") {
                return Ok(left);
            }
            self.chain()?;
            let right = self.test()?;
            let at = Self::pos(&left);
            let m = self.mk(ExprKind::In(Box::new(left), Box::new(right)), at);
            left = if negate {
                self.mk(ExprKind::Not(Box::new(m)), at)
            } else {
                m
            };
        }
    }

    fn test(&mut self) -> Result<Expr, ExprError> {
        let left = self.compare()?;
        if !self.eat_name("is") {
            return Ok(left);
        }
        let negate = self.eat_name("not");
        let right = self.compare()?;
        let at = Self::pos(&left);
        let (name, args) = match right.kind {
            ExprKind::Call(target, args) => (static_test_name(&target), Some(args)),
            ExprKind::Filter(input, name, mut args) => {
                args.positional.insert(0, *input);
                (name, Some(args))
            }
            ref other => (static_test_name_kind(other), None),
        };
        let test = self.mk(ExprKind::Is(Box::new(left), name, args), at);
        Ok(if negate {
            self.mk(ExprKind::Not(Box::new(test)), at)
        } else {
            test
        })
    }

    fn compare(&mut self) -> Result<Expr, ExprError> {
        let left = self.relational()?;
        let mut ops = Vec::new();
        loop {
            let op = match self.peek().tok {
                Tok::Op("==") => CmpOp::Eq,
                Tok::Op("===") => CmpOp::StrictEq,
                Tok::Op("!=") => CmpOp::Ne,
                Tok::Op("!==") => CmpOp::StrictNe,
                _ => break,
            };
            self.index += 1;
            self.chain()?;
            ops.push((op, self.relational()?));
        }
        Ok(self.comparison(left, ops))
    }

    fn relational(&mut self) -> Result<Expr, ExprError> {
        let left = self.additive()?;
        let mut ops = Vec::new();
        loop {
            let op = match self.peek().tok {
                Tok::Op("<") => CmpOp::Lt,
                Tok::Op("<=") => CmpOp::Le,
                Tok::Op(">") => CmpOp::Gt,
                Tok::Op(">=") => CmpOp::Ge,
                _ => break,
            };
            self.index += 1;
            self.chain()?;
            ops.push((op, self.additive()?));
        }
        Ok(self.comparison(left, ops))
    }

    fn comparison(&self, left: Expr, ops: Vec<(CmpOp, Expr)>) -> Expr {
        if ops.is_empty() {
            return left;
        }
        let at = Self::pos(&left);
        self.mk(ExprKind::Compare(Box::new(left), ops), at)
    }

    fn additive(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek().tok {
                Tok::Op("+") => BinOp::Add,
                Tok::Op("-") => BinOp::Sub,
                Tok::Op("~") => BinOp::Concat,
                _ => return Ok(left),
            };
            self.index += 1;
            self.chain()?;
            let right = self.multiplicative()?;
            let at = Self::pos(&left);
            left = self.mk(ExprKind::Bin(op, Box::new(left), Box::new(right)), at);
        }
    }

    /// `*`, `/`, `//` and `%` follow Nunjucks' layered grammar: a `//`
    /// floors everything to its left within the multiplicative chain.
    fn multiplicative(&mut self) -> Result<Expr, ExprError> {
        let (first, ops) = self.mul_seq()?;
        Ok(self.materialize(first, ops))
    }

    fn materialize(&self, first: Expr, ops: Vec<(BinOp, Expr)>) -> Expr {
        let mut left = first;
        for (op, right) in ops {
            let at = Self::pos(&left);
            left = self.mk(ExprKind::Bin(op, Box::new(left), Box::new(right)), at);
        }
        left
    }

    fn mul_seq(&mut self) -> Result<(Expr, Vec<(BinOp, Expr)>), ExprError> {
        let (first, mut ops) = self.div_seq()?;
        while self.eat_op("*") {
            let (f, rest) = self.div_seq()?;
            ops.push((BinOp::Mul, f));
            ops.extend(rest);
            self.chain()?;
        }
        Ok((first, ops))
    }

    fn div_seq(&mut self) -> Result<(Expr, Vec<(BinOp, Expr)>), ExprError> {
        let (first, mut ops) = self.floor_seq()?;
        while self.eat_op("/") {
            let (f, rest) = self.floor_seq()?;
            ops.push((BinOp::Div, f));
            ops.extend(rest);
            self.chain()?;
        }
        Ok((first, ops))
    }

    fn floor_seq(&mut self) -> Result<(Expr, Vec<(BinOp, Expr)>), ExprError> {
        let (mut first, mut ops) = self.mod_seq()?;
        while self.eat_op("//") {
            self.chain()?;
            let (f, rest) = self.mod_seq()?;
            ops.push((BinOp::Div, f));
            ops.extend(rest);
            let target = self.materialize(first, std::mem::take(&mut ops));
            let at = Self::pos(&target);
            first = self.mk(ExprKind::Floor(Box::new(target)), at);
        }
        Ok((first, ops))
    }

    fn mod_seq(&mut self) -> Result<(Expr, Vec<(BinOp, Expr)>), ExprError> {
        let first = self.power()?;
        let mut ops = Vec::new();
        while self.eat_op("%") {
            ops.push((BinOp::Mod, self.power()?));
            self.chain()?;
        }
        Ok((first, ops))
    }

    fn power(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.filter()?;
        while self.eat_op("**") {
            self.chain()?;
            let right = self.filter()?;
            let at = Self::pos(&left);
            left = self.mk(
                ExprKind::Bin(BinOp::Pow, Box::new(left), Box::new(right)),
                at,
            );
        }
        Ok(left)
    }

    fn filter(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.unary()?;
        while self.eat_op("|") {
            self.chain()?;
            e = self.filter_invocation(e)?;
        }
        Ok(e)
    }

    fn filter_invocation(&mut self, input: Expr) -> Result<Expr, ExprError> {
        let first = self.next();
        let Tok::Name(mut name) = first.tok.clone() else {
            return Err(self.error_at(
                &first,
                format!(
                    "Expected filter name, received {}",
                    Self::describe(&first.tok)
                ),
            ));
        };
        self.check_name(&name, &first)?;
        while self.eat_op(".") {
            let seg = self.next();
            let Tok::Name(s) = seg.tok.clone() else {
                return Err(self.error_at(&seg, "Expected name"));
            };
            self.check_name(&s, &seg)?;
            name.push('.');
            name.push_str(&s);
        }
        let args = if self.eat_op("(") {
            self.nested(|p| p.arguments(")"))?
        } else {
            Args::default()
        };
        Ok(self.mk(
            ExprKind::Filter(Box::new(input), name, args),
            (first.line, first.col),
        ))
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        let t = self.peek().clone();
        if self.eat_op("-") {
            let target = self.nested(|p| p.unary())?;
            if matches!(target.kind, ExprKind::Neg(_)) {
                return Err(self.error_at(&t, "Repeated unparenthesized unary - is not supported"));
            }
            return Ok(self.mk(ExprKind::Neg(Box::new(target)), (t.line, t.col)));
        }
        if self.eat_op("+") {
            let target = self.nested(|p| p.unary())?;
            if matches!(target.kind, ExprKind::Pos(_)) {
                return Err(self.error_at(&t, "Repeated unparenthesized unary + is not supported"));
            }
            return Ok(self.mk(ExprKind::Pos(Box::new(target)), (t.line, t.col)));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.primary()?;
        loop {
            let at = Self::pos(&e);
            if self.eat_op(".") {
                self.chain()?;
                let key = self.next();
                let Tok::Name(k) = key.tok.clone() else {
                    return Err(self.error_at(
                        &key,
                        format!("Expected name, received {}", Self::describe(&key.tok)),
                    ));
                };
                self.check_name(&k, &key)?;
                let lit = self.mk(ExprKind::Lit(Lit::Str(k)), (key.line, key.col));
                e = self.mk(ExprKind::Lookup(Box::new(e), Box::new(lit)), at);
            } else if self.eat_op("[") {
                self.chain()?;
                let key = self.nested(|p| p.subscript())?;
                self.expect_op("]")?;
                if let ExprKind::Lit(Lit::Str(s)) = &key.kind {
                    if is_reserved(s) {
                        return Err(self.error_pos(
                            key.line,
                            key.col,
                            format!("Template name \"{s}\" is reserved"),
                        ));
                    }
                }
                e = self.mk(ExprKind::Lookup(Box::new(e), Box::new(key)), at);
            } else if self.eat_op("(") {
                self.chain()?;
                let args = self.nested(|p| p.arguments(")"))?;
                e = self.mk(ExprKind::Call(Box::new(e), args), at);
            } else {
                return Ok(e);
            }
        }
    }

    fn subscript(&mut self) -> Result<Expr, ExprError> {
        let t = self.peek().clone();
        let at = (t.line, t.col);
        let is_stop = |p: &Self| matches!(p.peek().tok, Tok::Op(":" | "]"));
        let start = if is_stop(self) {
            None
        } else {
            Some(self.inline_if()?)
        };
        if !self.eat_op(":") {
            return start.ok_or_else(|| self.error("Expected subscript expression"));
        }
        let stop = if is_stop(self) {
            None
        } else {
            Some(Box::new(self.inline_if()?))
        };
        let step = if self.eat_op(":") && !matches!(self.peek().tok, Tok::Op("]")) {
            self.inline_if()?
        } else {
            self.mk(ExprKind::Lit(Lit::Num(1.0)), at)
        };
        Ok(self.mk(
            ExprKind::Slice(start.map(Box::new), stop, Box::new(step)),
            at,
        ))
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let t = self.next();
        let at = (t.line, t.col);
        let kind = match t.tok.clone() {
            Tok::Num(n) => ExprKind::Lit(Lit::Num(n)),
            Tok::Str(s) => ExprKind::Lit(Lit::Str(s)),
            Tok::Regex(source, flags) => ExprKind::Lit(Lit::Regex { source, flags }),
            Tok::Name(n) => match n.as_str() {
                "true" => ExprKind::Lit(Lit::Bool(true)),
                "false" => ExprKind::Lit(Lit::Bool(false)),
                "none" | "null" => ExprKind::Lit(Lit::Null),
                _ => {
                    self.check_name(&n, &t)?;
                    ExprKind::Sym(n)
                }
            },
            Tok::Op("(") => {
                let items = self.nested(|p| p.delimited(")"))?;
                if items.is_empty() {
                    return Err(self.error_at(&t, "Parenthesized expression cannot be empty"));
                }
                ExprKind::Group(items)
            }
            Tok::Op("[") => ExprKind::Array(self.nested(|p| p.delimited("]"))?),
            Tok::Op("{") => ExprKind::Dict(self.nested(|p| p.dict())?),
            Tok::Eof => return Err(self.error_at(&t, "Unexpected end of expression")),
            other => {
                return Err(self.error_at(
                    &t,
                    format!("Unexpected expression token {}", Self::describe(&other)),
                ))
            }
        };
        Ok(self.mk(kind, at))
    }

    fn dict(&mut self) -> Result<Vec<(String, Expr)>, ExprError> {
        let mut pairs = Vec::new();
        if self.eat_op("}") {
            return Ok(pairs);
        }
        loop {
            let k = self.next();
            let key = match &k.tok {
                Tok::Name(n) if !matches!(n.as_str(), "true" | "false" | "null" | "none") => {
                    n.clone()
                }
                Tok::Str(s) => s.clone(),
                _ => return Err(self.error_at(&k, "Dictionary keys must be strings or names")),
            };
            self.check_name(&key, &k)?;
            self.expect_op(":")?;
            pairs.push((key, self.inline_if()?));
            if pairs.len() > 1_000_000 {
                return Err(ExprError::LimitExceeded {
                    limit: LimitKind::ValueSize,
                });
            }
            if !self.eat_op(",") {
                break;
            }
        }
        self.expect_op("}")?;
        Ok(pairs)
    }

    fn delimited(&mut self, end: &str) -> Result<Vec<Expr>, ExprError> {
        let mut items = Vec::new();
        if self.eat_op(end) {
            return Ok(items);
        }
        loop {
            items.push(self.inline_if()?);
            if !self.eat_op(",") {
                break;
            }
        }
        self.expect_op(end)?;
        Ok(items)
    }

    fn arguments(&mut self, end: &str) -> Result<Args, ExprError> {
        let mut args = Args::default();
        if self.eat_op(end) {
            return Ok(args);
        }
        loop {
            let is_kw =
                matches!(self.peek().tok, Tok::Name(_)) && self.peek_at(1).tok == Tok::Op("=");
            if is_kw {
                let t = self.next();
                let Tok::Name(name) = t.tok.clone() else {
                    return Err(self.error_at(&t, "Expected name"));
                };
                self.check_name(&name, &t)?;
                self.index += 1;
                args.keyword.push((name, self.inline_if()?));
            } else {
                args.positional.push(self.inline_if()?);
            }
            if !self.eat_op(",") {
                break;
            }
        }
        self.expect_op(end)?;
        Ok(args)
    }
}

fn static_test_name(e: &Expr) -> String {
    static_test_name_kind(&e.kind)
}

/// Test names come from the syntax: a name, or a literal's string form;
/// any other shape names the `undefined` test, as in Nunjucks.
fn static_test_name_kind(k: &ExprKind) -> String {
    match k {
        ExprKind::Sym(n) => n.clone(),
        ExprKind::Lit(Lit::Str(s)) => s.clone(),
        ExprKind::Lit(Lit::Num(n)) => super::value::format_number(*n),
        ExprKind::Lit(Lit::Bool(b)) => b.to_string(),
        ExprKind::Lit(Lit::Null) => "null".into(),
        ExprKind::Lit(Lit::Regex { source, flags }) => {
            super::value::regex_to_string(&super::value::RegexLit {
                source: source.clone(),
                flags: flags.clone(),
            })
        }
        _ => "undefined".into(),
    }
}

/// Collects every filter name used in the nodes.
pub fn collect_filters(nodes: &[Node], out: &mut Vec<String>) {
    fn expr(e: &Expr, out: &mut Vec<String>) {
        let args = |a: &Args, out: &mut Vec<String>| {
            a.positional.iter().for_each(|e| expr(e, out));
            a.keyword.iter().for_each(|(_, e)| expr(e, out));
        };
        match &e.kind {
            ExprKind::Lit(_) | ExprKind::Sym(_) => {}
            ExprKind::Array(v) | ExprKind::Group(v) => v.iter().for_each(|e| expr(e, out)),
            ExprKind::Dict(v) => v.iter().for_each(|(_, e)| expr(e, out)),
            ExprKind::Lookup(a, b)
            | ExprKind::Or(a, b)
            | ExprKind::And(a, b)
            | ExprKind::Bin(_, a, b)
            | ExprKind::In(a, b) => {
                expr(a, out);
                expr(b, out);
            }
            ExprKind::Slice(a, b, c) => {
                a.iter().for_each(|e| expr(e, out));
                b.iter().for_each(|e| expr(e, out));
                expr(c, out);
            }
            ExprKind::InlineIf(a, b, c) => {
                expr(a, out);
                expr(b, out);
                c.iter().for_each(|e| expr(e, out));
            }
            ExprKind::Not(a) | ExprKind::Neg(a) | ExprKind::Pos(a) | ExprKind::Floor(a) => {
                expr(a, out)
            }
            ExprKind::Compare(a, ops) => {
                expr(a, out);
                ops.iter().for_each(|(_, e)| expr(e, out));
            }
            ExprKind::Is(a, _, x) => {
                expr(a, out);
                if let Some(x) = x {
                    args(x, out);
                }
            }
            ExprKind::Filter(a, name, x) => {
                expr(a, out);
                if !out.contains(name) {
                    out.push(name.clone());
                }
                args(x, out);
            }
            ExprKind::Call(a, x) => {
                expr(a, out);
                args(x, out);
            }
            ExprKind::Capture(body) => collect_filters(body, out),
        }
    }
    for n in nodes {
        match n {
            Node::Text(_) => {}
            Node::Output(e) | Node::Set(_, e) => expr(e, out),
            Node::If(c, a, b) => {
                expr(c, out);
                collect_filters(a, out);
                if let Some(b) = b {
                    collect_filters(b, out);
                }
            }
            Node::For {
                iter,
                body,
                otherwise,
                ..
            } => {
                expr(iter, out);
                collect_filters(body, out);
                if let Some(b) = otherwise {
                    collect_filters(b, out);
                }
            }
            Node::SetBlock(_, b) | Node::Block(b) => collect_filters(b, out),
            Node::Macro(m) => {
                m.defaults.iter().for_each(|(_, e)| expr(e, out));
                collect_filters(&m.body, out);
            }
            Node::CallBlock {
                target,
                args,
                caller,
            } => {
                expr(target, out);
                args.positional.iter().for_each(|e| expr(e, out));
                args.keyword.iter().for_each(|(_, e)| expr(e, out));
                caller.defaults.iter().for_each(|(_, e)| expr(e, out));
                collect_filters(&caller.body, out);
            }
            Node::Switch {
                expr: e,
                cases,
                default,
            } => {
                expr(e, out);
                for (c, b) in cases {
                    expr(c, out);
                    collect_filters(b, out);
                }
                if let Some(d) = default {
                    collect_filters(d, out);
                }
            }
        }
    }
}
