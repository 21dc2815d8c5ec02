//! The syntax tree produced by the parser. It is plain data (`Send + Sync`).

use std::sync::Arc;

/// A literal value.
#[derive(Debug, Clone)]
pub enum Lit {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Regex { source: String, flags: String },
}

/// A binary arithmetic/concatenation operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Concat,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    StrictEq,
    Ne,
    StrictNe,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Call arguments: positional values then `name=value` keywords.
#[derive(Debug, Clone, Default)]
pub struct Args {
    pub positional: Vec<Expr>,
    pub keyword: Vec<(String, Expr)>,
}

/// One expression with its 1-based source position.
#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub line: u32,
    pub col: u32,
}

/// Expression variants.
#[derive(Debug, Clone)]
pub enum ExprKind {
    Lit(Lit),
    Sym(String),
    Array(Vec<Expr>),
    /// `(a, b, c)`: evaluates every item and yields the last.
    Group(Vec<Expr>),
    Dict(Vec<(String, Expr)>),
    Lookup(Box<Expr>, Box<Expr>),
    /// `[start:stop:step]`, only as the key of a lookup.
    Slice(Option<Box<Expr>>, Option<Box<Expr>>, Box<Expr>),
    InlineIf(Box<Expr>, Box<Expr>, Option<Box<Expr>>),
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Pos(Box<Expr>),
    Floor(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Compare(Box<Expr>, Vec<(CmpOp, Expr)>),
    In(Box<Expr>, Box<Expr>),
    /// `left is name(args)`; `args` is `None` without parentheses.
    Is(Box<Expr>, String, Option<Args>),
    /// `input | name(args)`.
    Filter(Box<Expr>, String, Args),
    Call(Box<Expr>, Args),
    /// Rendered body used as a value (filter blocks).
    Capture(Vec<Node>),
}

/// A macro or call-block body.
#[derive(Debug)]
pub struct MacroDef {
    pub name: String,
    /// Parameters without defaults, in order.
    pub positional: Vec<String>,
    /// Parameters with defaults, in order.
    pub defaults: Vec<(String, Expr)>,
    pub body: Vec<Node>,
}

/// A template statement.
#[derive(Debug, Clone)]
pub enum Node {
    Text(String),
    Output(Expr),
    If(Expr, Vec<Node>, Option<Vec<Node>>),
    For {
        targets: Vec<String>,
        iter: Expr,
        body: Vec<Node>,
        otherwise: Option<Vec<Node>>,
    },
    Set(Vec<String>, Expr),
    SetBlock(Vec<String>, Vec<Node>),
    Macro(Arc<MacroDef>),
    CallBlock {
        target: Expr,
        args: Args,
        caller: Arc<MacroDef>,
    },
    Block(Vec<Node>),
    Switch {
        expr: Expr,
        cases: Vec<(Expr, Vec<Node>)>,
        default: Option<Vec<Node>>,
    },
}
