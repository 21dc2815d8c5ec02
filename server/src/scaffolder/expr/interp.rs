//! The tree-walking interpreter: scopes, statements, expressions, limits and
//! secret taint tracking.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::ast::{Args, BinOp, CmpOp, Expr, ExprKind, Lit, MacroDef, Node};
use super::value::{self as v, Callable, CyclerState, JoinerState, MacroClosure, RegexLit, Value};
use super::{filters, ExprError, LimitKind, Limits};

/// A shared scope handle.
pub type ScopeRef = Rc<Scope>;

#[derive(Debug)]
struct Entry {
    value: Value,
    writable: bool,
    tainted: bool,
}

/// One variable scope. Writes stop at scopes that isolate them.
#[derive(Debug)]
pub struct Scope {
    parent: Option<ScopeRef>,
    isolate: bool,
    entries: RefCell<HashMap<String, Entry>>,
}

impl Scope {
    /// A root scope.
    pub fn root() -> ScopeRef {
        Rc::new(Scope {
            parent: None,
            isolate: false,
            entries: RefCell::default(),
        })
    }

    /// A child scope.
    pub fn child(self: &Rc<Self>, isolate: bool) -> ScopeRef {
        Rc::new(Scope {
            parent: Some(self.clone()),
            isolate,
            entries: RefCell::default(),
        })
    }

    /// Defines a name here.
    pub fn set(&self, name: &str, value: Value, tainted: bool, writable: bool) {
        self.entries.borrow_mut().insert(
            name.to_string(),
            Entry {
                value,
                writable,
                tainted,
            },
        );
    }

    /// Looks a name up through the chain: `(value, tainted)`.
    pub fn get(&self, name: &str) -> Option<(Value, bool)> {
        if let Some(e) = self.entries.borrow().get(name) {
            return Some((e.value.clone(), e.tainted));
        }
        self.parent.as_ref().and_then(|p| p.get(name))
    }

    fn can_assign(&self, name: &str) -> bool {
        if let Some(e) = self.entries.borrow().get(name) {
            return e.writable;
        }
        !self.isolate && self.parent.as_ref().is_some_and(|p| p.can_assign(name))
    }

    /// `{% set %}` semantics: update a writable binding in reach, else define here.
    pub fn assign(&self, name: &str, value: Value, tainted: bool) {
        if !self.isolate {
            let writable = self.entries.borrow().get(name).map(|e| e.writable);
            if writable == Some(true) {
                self.set(name, value, tainted, true);
                return;
            }
            if writable.is_none() {
                if let Some(p) = self.parent.as_ref().filter(|p| p.can_assign(name)) {
                    p.assign(name, value, tainted);
                    return;
                }
            }
        }
        self.set(name, value, tainted, true);
    }
}

/// Where statements bind: the current scope plus the scope macros and
/// top-level assignments are exported to.
#[derive(Clone)]
struct Ctx {
    scope: ScopeRef,
    exports: ScopeRef,
    export_assignments: bool,
    export_macros: bool,
}

/// Evaluation state of one render.
pub struct Interp<'a> {
    limits: &'a Limits,
    compat: bool,
    started: Instant,
    work: u64,
    iterations: u64,
    output_bytes: usize,
    depth: usize,
    macro_depth: usize,
    taint: bool,
    pub fragments: Vec<String>,
    range: Value,
    cycler: Value,
    joiner: Value,
    loop_lengths: Vec<HashMap<usize, Value>>,
    stack_base: usize,
}

/// Stack a render may use before it fails with a depth error. Threads of
/// async runtimes commonly have 2 MiB stacks; this keeps well inside them.
const STACK_BUDGET: usize = 768 * 1024;

type R<T> = Result<T, ExprError>;

/// Evaluated positional and keyword arguments.
type ArgValues = (Vec<Value>, Vec<(String, Value)>);

fn runtime(e: &Expr, message: impl Into<String>) -> ExprError {
    ExprError::Runtime {
        line: e.line,
        column: e.col,
        message: message.into(),
    }
}

fn coerce<T>(e: &Expr, r: Result<T, v::CallableCoercion>) -> R<T> {
    r.map_err(|_| runtime(e, "Callable values cannot be used as data"))
}

impl<'a> Interp<'a> {
    /// A fresh interpreter for one render.
    pub fn new(limits: &'a Limits, compat: bool) -> Interp<'a> {
        Interp {
            limits,
            compat,
            started: Instant::now(),
            work: 0,
            iterations: 0,
            output_bytes: 0,
            depth: 0,
            macro_depth: 0,
            taint: false,
            fragments: Vec::new(),
            range: Value::Callable(Rc::new(Callable::Range)),
            cycler: Value::Callable(Rc::new(Callable::CyclerCtor)),
            joiner: Value::Callable(Rc::new(Callable::JoinerCtor)),
            loop_lengths: vec![HashMap::new()],
            stack_base: {
                let marker = 0u8;
                std::ptr::addr_of!(marker) as usize
            },
        }
    }

    /// Renders a template with `root` as its (read-only) context scope.
    pub fn render(&mut self, nodes: &[Node], root: &ScopeRef) -> R<String> {
        let exports = root.child(true);
        let ctx = Ctx {
            scope: exports.child(true),
            exports,
            export_assignments: true,
            export_macros: true,
        };
        let mut out = String::new();
        self.nodes(nodes, &ctx, &mut out)?;
        Ok(out)
    }

    /// Evaluates one expression in a fresh top-level scope; returns the value
    /// and whether it derives from tainted data.
    pub fn eval_root(&mut self, e: &Expr, root: &ScopeRef) -> R<(Value, bool)> {
        let exports = root.child(true);
        let ctx = Ctx {
            scope: exports.child(true),
            exports,
            export_assignments: true,
            export_macros: true,
        };
        self.tainted(|me| me.expr(e, &ctx))
    }

    fn tick(&mut self) -> R<()> {
        self.work += 1;
        if self.work % 256 == 0 && self.started.elapsed() > self.limits.max_render_time {
            return Err(ExprError::LimitExceeded {
                limit: LimitKind::RenderTime,
            });
        }
        Ok(())
    }

    /// Counts loop iterations and generated elements against the budget.
    pub fn charge_iterations(&mut self, n: u64) -> R<()> {
        self.iterations = self.iterations.saturating_add(n);
        if self.iterations > self.limits.max_loop_iterations {
            return Err(ExprError::LimitExceeded {
                limit: LimitKind::LoopIterations,
            });
        }
        self.tick()
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth > self.limits.max_depth * 8 || self.stack_used() > STACK_BUDGET {
            return Err(ExprError::LimitExceeded {
                limit: LimitKind::Depth,
            });
        }
        self.tick()
    }

    /// Approximate bytes of stack used since the render started, measured
    /// from the address of a local (no unsafe code involved).
    fn stack_used(&self) -> usize {
        let marker = 0u8;
        let here = std::ptr::addr_of!(marker) as usize;
        here.abs_diff(self.stack_base)
    }

    /// Runs `f` with a fresh taint flag; returns its result and whether it
    /// read tainted data. The outer flag accumulates the inner one.
    fn tainted<T>(&mut self, f: impl FnOnce(&mut Self) -> R<T>) -> R<(T, bool)> {
        let saved = std::mem::replace(&mut self.taint, false);
        let r = f(self);
        let t = self.taint;
        self.taint = saved || t;
        Ok((r?, t))
    }

    fn append(&mut self, out: &mut String, s: &str) -> R<()> {
        self.output_bytes = self.output_bytes.saturating_add(s.len());
        if self.output_bytes > self.limits.max_output_bytes {
            return Err(ExprError::LimitExceeded {
                limit: LimitKind::OutputSize,
            });
        }
        out.push_str(s);
        Ok(())
    }

    fn nodes(&mut self, nodes: &[Node], ctx: &Ctx, out: &mut String) -> R<()> {
        for n in nodes {
            self.enter()?;
            let r = self.node(n, ctx, out);
            self.depth -= 1;
            r?;
        }
        Ok(())
    }

    fn node(&mut self, node: &Node, ctx: &Ctx, out: &mut String) -> R<()> {
        match node {
            Node::Text(t) => self.append(out, t),
            Node::Output(e) => {
                let (value, tainted) = self.tainted(|me| me.expr(e, ctx))?;
                let text = self.render_value(e, &value)?;
                if tainted && !text.is_empty() {
                    self.fragments.push(text.clone());
                }
                self.append(out, &text)
            }
            Node::If(cond, body, otherwise) => {
                if self.expr(cond, ctx)?.truthy() {
                    self.nodes(body, ctx, out)
                } else if let Some(o) = otherwise {
                    self.nodes(o, ctx, out)
                } else {
                    Ok(())
                }
            }
            Node::For {
                targets,
                iter,
                body,
                otherwise,
            } => self.for_loop(node, targets, iter, body, otherwise.as_deref(), ctx, out),
            Node::Set(targets, e) => {
                let (value, t) = self.tainted(|me| me.expr(e, ctx))?;
                self.bind_set(targets, value, t, ctx);
                Ok(())
            }
            Node::SetBlock(targets, body) => {
                let (text, t) = self.tainted(|me| {
                    let mut buf = String::new();
                    me.nodes(body, ctx, &mut buf)?;
                    Ok(buf)
                })?;
                self.bind_set(targets, Value::str(text), t, ctx);
                Ok(())
            }
            Node::Macro(def) => {
                let handle = Value::Callable(Rc::new(Callable::Macro(Rc::new(MacroClosure {
                    def: def.clone(),
                    scope: ctx.exports.clone(),
                    is_caller: false,
                }))));
                ctx.scope.set(&def.name, handle.clone(), false, true);
                if ctx.export_macros {
                    ctx.exports.set(&def.name, handle, false, true);
                }
                Ok(())
            }
            Node::CallBlock {
                target,
                args,
                caller,
            } => {
                let (text, tainted) = self.tainted(|me| {
                    let callee = me.expr(target, ctx)?;
                    let Value::Callable(c) = &callee else {
                        return Err(runtime(
                            target,
                            "Call blocks can target only template macros",
                        ));
                    };
                    let Callable::Macro(m) = c.as_ref() else {
                        return Err(runtime(
                            target,
                            "Call blocks can target only template macros",
                        ));
                    };
                    let (positional, mut keyword) = me.args(args, ctx)?;
                    let caller = Value::Callable(Rc::new(Callable::Macro(Rc::new(MacroClosure {
                        def: caller.clone(),
                        scope: ctx.scope.clone(),
                        is_caller: true,
                    }))));
                    keyword.retain(|(k, _)| k != "caller");
                    keyword.push(("caller".into(), caller));
                    let value = me.invoke_macro(target, m, positional, keyword, ctx)?;
                    me.render_value(target, &value)
                })?;
                if tainted && !text.is_empty() {
                    self.fragments.push(text.clone());
                }
                self.append(out, &text)
            }
            Node::Block(body) => {
                let bctx = Ctx {
                    scope: ctx.scope.child(true),
                    exports: ctx.exports.clone(),
                    export_assignments: false,
                    export_macros: true,
                };
                self.nodes(body, &bctx, out)
            }
            Node::Switch {
                expr,
                cases,
                default,
            } => {
                let value = self.expr(expr, ctx)?;
                let mut matched = false;
                for (cond, body) in cases {
                    if !matched {
                        let c = self.expr(cond, ctx)?;
                        matched = v::strict_equal(&value, &c);
                    }
                    if matched {
                        if body.is_empty() {
                            continue;
                        }
                        return self.nodes(body, ctx, out);
                    }
                }
                match default {
                    Some(d) => self.nodes(d, ctx, out),
                    None => Ok(()),
                }
            }
        }
    }

    fn bind_set(&mut self, targets: &[String], value: Value, tainted: bool, ctx: &Ctx) {
        for t in targets {
            ctx.scope.assign(t, value.clone(), tainted);
            if ctx.export_assignments {
                ctx.exports.set(t, value.clone(), tainted, true);
            }
        }
    }

    /// Renders a value as output text.
    fn render_value(&self, e: &Expr, value: &Value) -> R<String> {
        v::render(value).map_err(|_| runtime(e, "Callable values cannot be rendered"))
    }

    #[allow(clippy::too_many_arguments)]
    fn for_loop(
        &mut self,
        node: &Node,
        targets: &[String],
        iter: &Expr,
        body: &[Node],
        otherwise: Option<&[Node]>,
        ctx: &Ctx,
        out: &mut String,
    ) -> R<()> {
        let (value, tainted) = self.tainted(|me| me.expr(iter, ctx))?;
        let (length, items) = self.loop_entries(iter, &value, targets.len())?;
        let key = node as *const Node as usize;
        let frame = self.loop_lengths.len() - 1;
        let mut loop_length = self.loop_lengths[frame]
            .get(&key)
            .cloned()
            .unwrap_or_default();
        if value.truthy() {
            loop_length = length;
            self.loop_lengths[frame].insert(key, loop_length.clone());
        }
        let scope = ctx.scope.child(false);
        let lctx = Ctx {
            scope: scope.clone(),
            exports: ctx.exports.clone(),
            export_assignments: false,
            export_macros: false,
        };
        let n = coerce(iter, v::to_number(&loop_length))?;
        for (index, item) in items.into_iter().enumerate() {
            self.charge_iterations(1)?;
            if targets.len() == 1 {
                scope.set(&targets[0], item, tainted, true);
            } else {
                let bound = if matches!(value, Value::Array(_) | Value::Safe(_)) {
                    targets.len()
                } else {
                    targets.len().min(2)
                };
                for (i, t) in targets.iter().enumerate().take(bound) {
                    let part = destructure(&item, i).map_err(|m| runtime(iter, m))?;
                    scope.set(t, part, tainted, true);
                }
            }
            let i = index as f64;
            let loop_rec = Value::object([
                (Rc::from("index"), Value::Num(i + 1.0)),
                (Rc::from("index0"), Value::Num(i)),
                (Rc::from("revindex"), Value::Num(n - i)),
                (Rc::from("revindex0"), Value::Num(n - i - 1.0)),
                (Rc::from("first"), Value::Bool(index == 0)),
                (Rc::from("last"), Value::Bool(i == n - 1.0)),
                (Rc::from("length"), loop_length.clone()),
            ]);
            scope.set("loop", loop_rec, false, true);
            self.nodes(body, &lctx, out)?;
        }
        if let Some(o) = otherwise {
            if !loop_length.truthy() {
                self.nodes(o, &lctx, out)?;
            }
        }
        Ok(())
    }

    /// The loop length and items of an iterable, following Nunjucks' rules
    /// for one or several loop targets.
    fn loop_entries(&mut self, e: &Expr, value: &Value, targets: usize) -> R<(Value, Vec<Value>)> {
        let chars =
            |s: &str| -> Vec<Value> { s.chars().map(|c| Value::str(c.to_string())).collect() };
        Ok(match value {
            Value::Array(a) => (Value::Num(a.len() as f64), a.as_ref().clone()),
            Value::Safe(s) => {
                let items = chars(&s.0);
                (Value::Num(items.len() as f64), items)
            }
            Value::Str(s) if targets == 1 => {
                let items = chars(s);
                (Value::Num(items.len() as f64), items)
            }
            Value::Str(s) => {
                let items: Vec<Value> = s
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        Value::array(vec![Value::str(i.to_string()), Value::str(c.to_string())])
                    })
                    .collect();
                (Value::Num(items.len() as f64), items)
            }
            Value::Object(o) if targets == 1 => {
                let length = o.get("length").cloned().unwrap_or_default();
                let n = coerce(e, v::to_number(&length))?;
                let count = if n.is_nan() || n <= 0.0 {
                    0.0
                } else {
                    n.ceil()
                };
                if count > self.limits.max_loop_iterations as f64 {
                    return Err(ExprError::LimitExceeded {
                        limit: LimitKind::LoopIterations,
                    });
                }
                let items = (0..count as u64)
                    .map(|i| o.get(&i.to_string()).cloned().unwrap_or_default())
                    .collect();
                (length, items)
            }
            Value::Object(o) => (
                Value::Num(o.len() as f64),
                o.entries()
                    .map(|(k, v)| Value::array(vec![Value::Str(k.clone()), v.clone()]))
                    .collect(),
            ),
            _ if targets == 1 => (Value::Undefined, Vec::new()),
            _ => (Value::Num(0.0), Vec::new()),
        })
    }

    fn args(&mut self, args: &Args, ctx: &Ctx) -> R<ArgValues> {
        let mut positional = Vec::with_capacity(args.positional.len());
        for a in &args.positional {
            positional.push(self.expr(a, ctx)?);
        }
        let mut keyword: Vec<(String, Value)> = Vec::new();
        for (k, a) in &args.keyword {
            let value = self.expr(a, ctx)?;
            keyword.retain(|(n, _)| n != k);
            keyword.push((k.clone(), value));
        }
        Ok((positional, keyword))
    }

    fn invoke_macro(
        &mut self,
        at: &Expr,
        m: &Rc<MacroClosure>,
        positional: Vec<Value>,
        keyword: Vec<(String, Value)>,
        _ctx: &Ctx,
    ) -> R<Value> {
        self.macro_depth += 1;
        if self.macro_depth > self.limits.max_depth {
            return Err(ExprError::LimitExceeded {
                limit: LimitKind::Depth,
            });
        }
        self.loop_lengths.push(HashMap::new());
        let r = self.invoke_macro_inner(at, m, positional, keyword);
        self.loop_lengths.pop();
        self.macro_depth -= 1;
        r
    }

    fn invoke_macro_inner(
        &mut self,
        _at: &Expr,
        m: &Rc<MacroClosure>,
        positional: Vec<Value>,
        keyword: Vec<(String, Value)>,
    ) -> R<Value> {
        let def: &Arc<MacroDef> = &m.def;
        let local = m.scope.child(true);
        let ctx = Ctx {
            scope: local.clone(),
            exports: m.scope.clone(),
            export_assignments: false,
            export_macros: !m.is_caller,
        };
        let names: Vec<&str> = def.positional.iter().map(String::as_str).collect();
        let defaults: Vec<&str> = def.defaults.iter().map(|(n, _)| n.as_str()).collect();
        let (positional, keyword) = normalize_args(&names, &defaults, positional, keyword);
        let declares_caller = names.contains(&"caller") || defaults.contains(&"caller");
        for (i, name) in def.positional.iter().enumerate() {
            local.set(
                name,
                positional.get(i).cloned().unwrap_or_default(),
                false,
                true,
            );
        }
        for (name, default) in &def.defaults {
            let value = match keyword.iter().find(|(k, _)| k == name) {
                Some((_, v)) => v.clone(),
                None => self.expr(default, &ctx)?,
            };
            local.set(name, value, false, true);
        }
        if !declares_caller {
            if let Some((_, c)) = keyword.iter().find(|(k, _)| k == "caller") {
                local.set("caller", c.clone(), false, true);
            }
        }
        let mut buf = String::new();
        self.nodes(&def.body, &ctx, &mut buf)?;
        Ok(Value::safe(buf))
    }

    /// Evaluates an expression.
    fn expr(&mut self, e: &Expr, ctx: &Ctx) -> R<Value> {
        self.enter()?;
        let r = self.expr_inner(e, ctx);
        self.depth -= 1;
        r
    }

    fn expr_inner(&mut self, e: &Expr, ctx: &Ctx) -> R<Value> {
        Ok(match &e.kind {
            ExprKind::Lit(l) => match l {
                Lit::Null => Value::Null,
                Lit::Bool(b) => Value::Bool(*b),
                Lit::Num(n) => Value::Num(*n),
                Lit::Str(s) => Value::str(s.as_str()),
                Lit::Regex { source, flags } => Value::Regex(Rc::new(RegexLit {
                    source: source.clone(),
                    flags: flags.clone(),
                })),
            },
            ExprKind::Sym(name) => self.lookup_name(name, ctx),
            ExprKind::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    out.push(self.expr(i, ctx)?);
                }
                Value::array(out)
            }
            ExprKind::Group(items) => {
                let mut last = Value::Undefined;
                for i in items {
                    last = self.expr(i, ctx)?;
                }
                last
            }
            ExprKind::Dict(pairs) => {
                let mut out = Vec::with_capacity(pairs.len());
                for (k, x) in pairs {
                    out.push((Rc::from(k.as_str()), self.expr(x, ctx)?));
                }
                Value::object(out)
            }
            ExprKind::Lookup(target, key) => {
                let t = self.expr(target, ctx)?;
                if let ExprKind::Slice(start, stop, step) = &key.kind {
                    return self.slice(e, &t, start.as_deref(), stop.as_deref(), step, ctx);
                }
                let k = self.expr(key, ctx)?;
                let k = coerce(key, v::to_js_string(&k))?;
                self.member(&t, &k)
            }
            ExprKind::Slice(..) => return Err(runtime(e, "Invalid slice")),
            ExprKind::InlineIf(cond, body, otherwise) => {
                if self.expr(cond, ctx)?.truthy() {
                    self.expr(body, ctx)?
                } else if let Some(o) = otherwise {
                    self.expr(o, ctx)?
                } else {
                    Value::str("")
                }
            }
            ExprKind::Or(a, b) => {
                let l = self.expr(a, ctx)?;
                if l.truthy() {
                    l
                } else {
                    self.expr(b, ctx)?
                }
            }
            ExprKind::And(a, b) => {
                let l = self.expr(a, ctx)?;
                if l.truthy() {
                    self.expr(b, ctx)?
                } else {
                    l
                }
            }
            ExprKind::Not(a) => Value::Bool(!self.expr(a, ctx)?.truthy()),
            ExprKind::Neg(a) => {
                let x = self.expr(a, ctx)?;
                Value::Num(-coerce(e, v::to_number(&x))?)
            }
            ExprKind::Pos(a) => {
                let x = self.expr(a, ctx)?;
                Value::Num(coerce(e, v::to_number(&x))?)
            }
            ExprKind::Floor(a) => {
                let x = self.expr(a, ctx)?;
                Value::Num(coerce(e, v::to_number(&x))?.floor())
            }
            ExprKind::Bin(op, a, b) => {
                let l = self.expr(a, ctx)?;
                let r = self.expr(b, ctx)?;
                self.binary(e, *op, &l, &r)?
            }
            ExprKind::Compare(first, ops) => {
                let mut left = self.expr(first, ctx)?;
                let mut result = false;
                for (op, x) in ops {
                    let right = self.expr(x, ctx)?;
                    result = coerce(e, compare(&left, *op, &right))?;
                    left = Value::Bool(result);
                }
                Value::Bool(result)
            }
            ExprKind::In(a, b) => {
                let needle = self.expr(a, ctx)?;
                let hay = self.expr(b, ctx)?;
                Value::Bool(contains(e, &hay, &needle)?)
            }
            ExprKind::Is(a, name, args) => self.test(e, a, name, args.as_ref(), ctx)?,
            ExprKind::Filter(input, name, args) => {
                let input = self.expr(input, ctx)?;
                let (positional, keyword) = self.args(args, ctx)?;
                let compat = self.compat;
                filters::apply_filter(self, e, name, input, positional, keyword, compat)?
            }
            ExprKind::Call(target, args) => {
                let callee = self.expr(target, ctx)?;
                let Value::Callable(c) = &callee else {
                    let what = match &target.kind {
                        ExprKind::Sym(n) => format!("Template value \"{n}\""),
                        _ => "Template expression".to_string(),
                    };
                    return Err(runtime(
                        e,
                        format!("{what} resolved to {} and cannot be called", callee.kind()),
                    ));
                };
                let (positional, keyword) = self.args(args, ctx)?;
                self.call(e, c, positional, keyword, ctx)?
            }
            ExprKind::Capture(body) => {
                let cctx = Ctx {
                    scope: ctx.scope.child(false),
                    ..ctx.clone()
                };
                let mut buf = String::new();
                self.nodes(body, &cctx, &mut buf)?;
                Value::str(buf)
            }
        })
    }

    fn lookup_name(&mut self, name: &str, ctx: &Ctx) -> Value {
        if let Some((value, tainted)) = ctx.scope.get(name) {
            self.taint |= tainted;
            return value;
        }
        if self.compat {
            match name {
                "True" => return Value::Bool(true),
                "False" => return Value::Bool(false),
                "None" => return Value::Null,
                _ => {}
            }
        }
        match name {
            "range" => self.range.clone(),
            "cycler" => self.cycler.clone(),
            "joiner" => self.joiner.clone(),
            _ => Value::Undefined,
        }
    }

    /// Member lookup `target[key]`; callables read from containers are fresh handles.
    fn member(&mut self, target: &Value, key: &str) -> Value {
        if let Value::Callable(c) = target {
            if let Callable::Cycler(state) = c.as_ref() {
                return match key {
                    "current" => {
                        let i = state.index.get();
                        if i < 0 {
                            Value::Null
                        } else {
                            fresh(state.values.get(i as usize).cloned().unwrap_or_default())
                        }
                    }
                    "next" => Value::Callable(Rc::new(Callable::CyclerNext(state.clone()))),
                    "reset" => Value::Callable(Rc::new(Callable::CyclerReset(state.clone()))),
                    _ => Value::Undefined,
                };
            }
            return Value::Undefined;
        }
        fresh(lookup_own(target, key))
    }

    fn binary(&mut self, e: &Expr, op: BinOp, l: &Value, r: &Value) -> R<Value> {
        let out = match op {
            BinOp::Add => coerce(e, v::add(l, r))?,
            BinOp::Concat => {
                let mut s = coerce(e, v::to_js_string(l))?;
                s.push_str(&coerce(e, v::to_js_string(r))?);
                Value::str(s)
            }
            _ => {
                let a = coerce(e, v::to_number(l))?;
                let b = coerce(e, v::to_number(r))?;
                Value::Num(match op {
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => a / b,
                    BinOp::Mod => a % b,
                    _ => a.powf(b),
                })
            }
        };
        if let Value::Str(s) = &out {
            self.check_string(s.len())?;
        }
        Ok(out)
    }

    /// Bounds the size of intermediate strings.
    pub fn check_string(&self, len: usize) -> R<()> {
        if len > self.limits.max_output_bytes {
            return Err(ExprError::LimitExceeded {
                limit: LimitKind::ValueSize,
            });
        }
        Ok(())
    }

    /// Bounds the element count of intermediate arrays.
    pub fn check_elements(&self, count: f64) -> R<()> {
        if count.is_nan() || count > self.limits.max_loop_iterations as f64 {
            return Err(ExprError::LimitExceeded {
                limit: LimitKind::ValueSize,
            });
        }
        Ok(())
    }

    fn test(
        &mut self,
        e: &Expr,
        left: &Expr,
        name: &str,
        args: Option<&Args>,
        ctx: &Ctx,
    ) -> R<Value> {
        let Some(arity) = filters::test_arity(name) else {
            return Err(ExprError::UnknownTest {
                name: name.to_string(),
            });
        };
        let given = args.map_or(0, |a| a.positional.len());
        if args.is_some_and(|a| !a.keyword.is_empty())
            || (args.is_some() && given != arity)
            || (args.is_none() && arity != 0)
        {
            return Err(runtime(
                e,
                format!(
                    "Template test {name} requires {arity} positional argument{}",
                    if arity == 1 { "" } else { "s" }
                ),
            ));
        }
        let input = self.expr(left, ctx)?;
        let mut positional = Vec::new();
        if let Some(a) = args {
            positional = self.args(a, ctx)?.0;
        }
        Ok(Value::Bool(filters::apply_test(
            e,
            name,
            &input,
            &positional,
        )?))
    }

    fn call(
        &mut self,
        e: &Expr,
        c: &Rc<Callable>,
        positional: Vec<Value>,
        keyword: Vec<(String, Value)>,
        ctx: &Ctx,
    ) -> R<Value> {
        if let Callable::Macro(m) = c.as_ref() {
            return self.invoke_macro(e, m, positional, keyword, ctx);
        }
        if !keyword.is_empty() {
            return Err(runtime(
                e,
                "Built-in functions accept positional arguments only",
            ));
        }
        if positional.iter().any(Value::contains_callable) {
            return Err(runtime(
                e,
                "Callable values cannot be passed to built-in functions",
            ));
        }
        match c.as_ref() {
            Callable::Range => self.range_values(e, positional),
            Callable::CyclerCtor => Ok(Value::Callable(Rc::new(Callable::Cycler(Rc::new(
                CyclerState {
                    values: positional,
                    index: Cell::new(-1),
                },
            ))))),
            Callable::JoinerCtor => {
                let sep = positional
                    .into_iter()
                    .next()
                    .filter(Value::truthy)
                    .unwrap_or(Value::str(","));
                Ok(Value::Callable(Rc::new(Callable::Joiner(Rc::new(
                    JoinerState {
                        separator: sep,
                        used: Cell::new(false),
                    },
                )))))
            }
            Callable::Joiner(state) => {
                if state.used.replace(true) {
                    Ok(state.separator.clone())
                } else {
                    Ok(Value::str(""))
                }
            }
            Callable::CyclerNext(state) => {
                if state.values.is_empty() {
                    state.index.set(0);
                    return Ok(Value::Undefined);
                }
                let next = (state.index.get() + 1) % state.values.len() as i64;
                state.index.set(next);
                Ok(state.values[next as usize].clone())
            }
            Callable::CyclerReset(state) => {
                state.index.set(-1);
                Ok(Value::Undefined)
            }
            Callable::Cycler(_) | Callable::Macro(_) => Err(runtime(
                e,
                "Interpreter builtin object is not directly callable",
            )),
        }
    }

    fn range_values(&mut self, e: &Expr, args: Vec<Value>) -> R<Value> {
        if args.len() > 3 {
            return Err(runtime(e, "range accepts at most 3 arguments"));
        }
        let mut it = args.into_iter();
        let (mut start, mut stop, mut step) = (
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
        );
        if matches!(stop, Value::Undefined) {
            stop = start;
            start = Value::Num(0.0);
            step = Value::Num(1.0);
        } else if !step.truthy() {
            step = Value::Num(1.0);
        }
        let positive =
            coerce(e, v::order(&step, &Value::Num(0.0)))? == Some(std::cmp::Ordering::Greater);
        let mut out = Vec::new();
        let mut value = start;
        loop {
            let ord = coerce(e, v::order(&value, &stop))?;
            let go = if positive {
                ord == Some(std::cmp::Ordering::Less)
            } else {
                ord == Some(std::cmp::Ordering::Greater)
            };
            if !go {
                break;
            }
            out.push(value.clone());
            self.check_elements(out.len() as f64)?;
            self.tick()?;
            value = coerce(e, v::add(&value, &step))?;
        }
        Ok(Value::array(out))
    }

    #[allow(clippy::too_many_arguments)]
    fn slice(
        &mut self,
        e: &Expr,
        input: &Value,
        start: Option<&Expr>,
        stop: Option<&Expr>,
        step: &Expr,
        ctx: &Ctx,
    ) -> R<Value> {
        if matches!(input, Value::Callable(_)) {
            return Err(runtime(e, "Callable values cannot be sliced"));
        }
        let target = if input.truthy() {
            input.clone()
        } else {
            Value::array(Vec::new())
        };
        let length = lookup_own(&target, "length");
        let mut start = match start {
            Some(x) => self.expr(x, ctx)?,
            None => Value::Null,
        };
        let mut stop = match stop {
            Some(x) => self.expr(x, ctx)?,
            None => Value::Null,
        };
        let step = self.expr(step, ctx)?;
        let nstep = coerce(e, v::to_number(&step))?;
        if !nstep.is_finite() || nstep == 0.0 {
            return Err(runtime(
                e,
                "Slice step must have finite non-zero numeric coercion",
            ));
        }
        use std::cmp::Ordering::{Greater, Less};
        let ord = |a: &Value, b: &Value| coerce(e, v::order(a, b));
        let zero = Value::Num(0.0);
        let negative = ord(&step, &zero)? == Some(Less);
        if matches!(start, Value::Null) {
            start = if negative {
                Value::Num(coerce(e, v::to_number(&length))? - 1.0)
            } else {
                zero.clone()
            };
        }
        if matches!(stop, Value::Null) {
            stop = if negative {
                Value::Num(-1.0)
            } else {
                length.clone()
            };
        } else if ord(&stop, &zero)? == Some(Less) {
            stop = coerce(e, v::add(&stop, &length))?;
        }
        if ord(&start, &zero)? == Some(Less) {
            start = coerce(e, v::add(&start, &length))?;
        }
        let mut out = Vec::new();
        let mut index = start;
        loop {
            if ord(&index, &zero)? == Some(Less) || ord(&index, &length)? == Some(Greater) {
                break;
            }
            let o = ord(&index, &stop)?;
            if (!negative && matches!(o, Some(std::cmp::Ordering::Equal | Greater)))
                || (negative && matches!(o, Some(std::cmp::Ordering::Equal | Less)))
            {
                break;
            }
            self.tick()?;
            let key = coerce(e, v::to_js_string(&index))?;
            out.push(lookup_own(&target, &key));
            self.check_elements(out.len() as f64)?;
            index = coerce(e, v::add(&index, &step))?;
        }
        Ok(Value::array(out))
    }
}

/// Reading a callable out of a container yields a distinct handle.
fn fresh(value: Value) -> Value {
    match value {
        Value::Callable(c) => Value::Callable(Rc::new(c.as_ref().clone())),
        other => other,
    }
}

/// Own-property lookup over template values.
pub fn lookup_own(target: &Value, key: &str) -> Value {
    let index_of = |len: usize| -> Option<usize> {
        v::canonical_index(key)
            .map(|i| i as usize)
            .filter(|i| *i < len)
    };
    let char_at = |s: &str| -> Value {
        let units: Vec<u16> = s.encode_utf16().collect();
        match index_of(units.len()) {
            Some(i) => Value::str(String::from_utf16_lossy(&units[i..i + 1])),
            None => Value::Undefined,
        }
    };
    match target {
        Value::Object(o) => o.get(key).cloned().unwrap_or_default(),
        Value::Array(a) => {
            if key == "length" {
                return Value::Num(a.len() as f64);
            }
            index_of(a.len()).map(|i| a[i].clone()).unwrap_or_default()
        }
        Value::Str(s) => {
            if key == "length" {
                return Value::Num(v::js_len(s) as f64);
            }
            char_at(s)
        }
        Value::Safe(s) => match key {
            "val" => Value::str(s.0.as_str()),
            "length" => Value::Num(v::js_len(&s.0) as f64),
            _ => char_at(&s.0),
        },
        _ => Value::Undefined,
    }
}

fn destructure(value: &Value, index: usize) -> Result<Value, &'static str> {
    match value {
        Value::Undefined | Value::Null => Err("Cannot destructure a nullish loop value"),
        Value::Array(a) => Ok(a.get(index).cloned().unwrap_or_default()),
        Value::Object(o) => Ok(o.get(&index.to_string()).cloned().unwrap_or_default()),
        Value::Str(s) => Ok(s
            .chars()
            .nth(index)
            .map(|c| Value::str(c.to_string()))
            .unwrap_or_default()),
        _ => Ok(Value::Undefined),
    }
}

fn compare(l: &Value, op: CmpOp, r: &Value) -> Result<bool, v::CallableCoercion> {
    use std::cmp::Ordering::*;
    Ok(match op {
        CmpOp::Eq => v::loose_equal(l, r)?,
        CmpOp::Ne => !v::loose_equal(l, r)?,
        CmpOp::StrictEq => v::strict_equal(l, r),
        CmpOp::StrictNe => !v::strict_equal(l, r),
        CmpOp::Lt => v::order(l, r)? == Some(Less),
        CmpOp::Le => matches!(v::order(l, r)?, Some(Less | Equal)),
        CmpOp::Gt => v::order(l, r)? == Some(Greater),
        CmpOp::Ge => matches!(v::order(l, r)?, Some(Greater | Equal)),
    })
}

fn contains(e: &Expr, hay: &Value, needle: &Value) -> R<bool> {
    match hay {
        Value::Str(s) => Ok(s.contains(coerce(e, v::to_js_string(needle))?.as_str())),
        Value::Safe(_) => {
            let k = coerce(e, v::to_js_string(needle))?;
            Ok(k == "length" || k == "val")
        }
        Value::Array(a) => Ok(a.iter().any(|x| v::strict_equal(x, needle))),
        Value::Object(o) => Ok(o.has(&coerce(e, v::to_js_string(needle))?)),
        _ => Err(runtime(
            e,
            "Membership requires an array, record, or string",
        )),
    }
}

/// Nunjucks' macro calling convention: surplus positionals fill defaulted
/// parameters; missing positionals are taken from keywords.
pub fn normalize_args(
    names: &[&str],
    defaults: &[&str],
    positional: Vec<Value>,
    mut keyword: Vec<(String, Value)>,
) -> (Vec<Value>, Vec<(String, Value)>) {
    let n = names.len();
    if positional.len() > n {
        let mut positional = positional;
        let surplus = positional.split_off(n);
        for (name, value) in defaults.iter().zip(surplus) {
            keyword.retain(|(k, _)| k != name);
            keyword.push((name.to_string(), value));
        }
        return (positional, keyword);
    }
    let mut positional = positional;
    for name in &names[positional.len()..] {
        let found = keyword.iter().position(|(k, _)| k == name);
        positional.push(found.map(|i| keyword.remove(i).1).unwrap_or_default());
    }
    (positional, keyword)
}
