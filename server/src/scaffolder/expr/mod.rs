//! A sandboxed, Nunjucks-compatible template engine for scaffolder templates.
//!
//! Templates are parsed into a tree and interpreted: no code is generated or
//! executed, and every render is bounded by [`Limits`]. Values follow
//! JavaScript semantics (as Backstage renders with a JavaScript engine), and
//! values derived from secrets are tracked so callers can redact them.

mod ast;
mod backstage;
mod filters;
mod interp;
mod lexer;
mod parser;
mod value;

pub use backstage::{repo_url_parts, RepoUrlError};

#[cfg(test)]
mod tests;

use std::time::Duration;

use self::value::Value;

/// Resource bounds applied to every parse and render.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted template source.
    pub max_template_bytes: usize,
    /// Largest output, counting captured output; also bounds any intermediate string.
    pub max_output_bytes: usize,
    /// Total loop iterations per render; also bounds the length of any intermediate array.
    pub max_loop_iterations: u64,
    /// Nesting of blocks, brackets and macro calls (expression evaluation may nest 8 times deeper).
    pub max_depth: usize,
    /// Wall-clock budget of one render.
    pub max_render_time: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_template_bytes: 1024 * 1024,
            max_output_bytes: 2 * 1024 * 1024,
            max_loop_iterations: 1_000_000,
            max_depth: 64,
            max_render_time: Duration::from_secs(2),
        }
    }
}

/// Variable tag delimiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syntax {
    /// Opening variable tag.
    pub variable_start: &'static str,
    /// Closing variable tag.
    pub variable_end: &'static str,
}

impl Syntax {
    /// `${{ }}`, used by scaffolder templates and skeletons.
    pub const SCAFFOLDER: Syntax = Syntax {
        variable_start: "${{",
        variable_end: "}}",
    };
    /// `{{ }}`: Backstage's `cookiecutterCompat` mode, which also provides the
    /// `jsonify` filter and the `True`/`False`/`None` names.
    pub const NUNJUCKS: Syntax = Syntax {
        variable_start: "{{",
        variable_end: "}}",
    };

    fn compat(self) -> bool {
        self.variable_start == "{{"
    }
}

/// Which limit a template exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Template source too large.
    TemplateSize,
    /// Rendered output too large.
    OutputSize,
    /// Too many loop iterations.
    LoopIterations,
    /// Nesting or recursion too deep.
    Depth,
    /// Render took too long.
    RenderTime,
    /// An intermediate string or array too large.
    ValueSize,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitKind::TemplateSize => "the template is too large",
            LimitKind::OutputSize => "the rendered output is too large",
            LimitKind::LoopIterations => "too many loop iterations",
            LimitKind::Depth => "nesting or recursion is too deep",
            LimitKind::RenderTime => "rendering took too long",
            LimitKind::ValueSize => "an intermediate value is too large",
        })
    }
}

/// Template errors.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExprError {
    /// The template does not parse.
    #[error("template syntax error at line {line}, column {column}: {message}")]
    Syntax {
        line: u32,
        column: u32,
        message: String,
    },
    /// A filter that does not exist.
    #[error("Unknown template filter \"{name}\"")]
    UnknownFilter { name: String },
    /// A test (`is name`) that does not exist.
    #[error("Unknown template test \"{name}\"")]
    UnknownTest { name: String },
    /// A resource limit was exceeded.
    #[error("template limit exceeded: {limit}")]
    LimitExceeded { limit: LimitKind },
    /// Evaluation failed.
    #[error("template error at line {line}, column {column}: {message}")]
    Runtime {
        line: u32,
        column: u32,
        message: String,
    },
}

/// Variables visible to templates. The `secrets` subtree is tainted: any
/// output derived from it is reported in `secret_fragments`.
#[derive(Debug, Clone, Default)]
pub struct Context {
    root: serde_json::Map<String, serde_json::Value>,
    secrets: Option<serde_json::Value>,
}

impl Context {
    /// A context from a JSON object (other JSON values give an empty context).
    pub fn new(root: serde_json::Value) -> Context {
        Context {
            root: match root {
                serde_json::Value::Object(m) => m,
                _ => serde_json::Map::new(),
            },
            secrets: None,
        }
    }

    /// Adds `secrets` (tainted), replacing any `secrets` key of the root.
    pub fn with_secrets(mut self, secrets: serde_json::Value) -> Context {
        self.secrets = Some(secrets);
        self
    }

    fn scope(&self) -> interp::ScopeRef {
        let scope = interp::Scope::root();
        for (k, v) in &self.root {
            if parser::is_reserved(k) {
                continue;
            }
            scope.set(k, Value::from_json(v), false, false);
        }
        if let Some(s) = &self.secrets {
            scope.set("secrets", Value::from_json(s), true, false);
        }
        scope
    }
}

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    nodes: Vec<ast::Node>,
    syntax: Syntax,
    filters: Vec<String>,
}

impl Template {
    /// The filter names the template uses, each once, in order of appearance.
    pub fn filters(&self) -> impl Iterator<Item = &str> {
        self.filters.iter().map(String::as_str)
    }

    /// The first filter name the template uses that does not exist.
    pub fn unknown_filter(&self) -> Option<&str> {
        self.filters()
            .find(|f| !filters::is_known_filter(f, self.syntax.compat()))
    }

    /// The single `{{ expr }}` this template consists of, if any.
    fn sole_expression(&self) -> Option<&ast::Expr> {
        match self.nodes.as_slice() {
            [ast::Node::Output(e)] => Some(e),
            _ => None,
        }
    }
}

/// Rendered text plus the fragments of it derived from secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The output.
    pub text: String,
    /// Output fragments derived from secrets (add them to the redaction set).
    pub secret_fragments: Vec<String>,
}

/// A rendered input value (`None`: rendered to nothing, drop it).
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedValue {
    /// The value.
    pub value: Option<serde_json::Value>,
    /// Strings derived from secrets (add them to the redaction set).
    pub secret_fragments: Vec<String>,
}

/// The template engine. Cheap to share; `Send + Sync`.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    limits: Limits,
}

impl Engine {
    /// An engine with the given limits.
    pub fn new(limits: Limits) -> Engine {
        Engine { limits }
    }

    /// Parses a template.
    pub fn parse(&self, src: &str, syntax: Syntax) -> Result<Template, ExprError> {
        if src.len() > self.limits.max_template_bytes {
            return Err(ExprError::LimitExceeded {
                limit: LimitKind::TemplateSize,
            });
        }
        let nodes = parser::parse_template(src, syntax, self.limits.max_depth)?;
        let mut filters = Vec::new();
        parser::collect_filters(&nodes, &mut filters);
        Ok(Template {
            nodes,
            syntax,
            filters,
        })
    }

    /// Renders a parsed template.
    pub fn render(&self, t: &Template, ctx: &Context) -> Result<Rendered, ExprError> {
        let mut it = interp::Interp::new(&self.limits, t.syntax.compat());
        let text = it.render(&t.nodes, &ctx.scope())?;
        Ok(Rendered {
            text,
            secret_fragments: dedup(it.fragments),
        })
    }

    /// Parses and renders a template.
    pub fn render_str(
        &self,
        src: &str,
        syntax: Syntax,
        ctx: &Context,
    ) -> Result<Rendered, ExprError> {
        self.render(&self.parse(src, syntax)?, ctx)
    }

    /// Renders one template input string the way Backstage does: a string
    /// that is a single `${{ expr }}` keeps the native JSON type of its value;
    /// anything else renders to a string; an empty result gives `None`.
    pub fn render_value(&self, src: &str, ctx: &Context) -> Result<RenderedValue, ExprError> {
        let t = self.parse(src, Syntax::SCAFFOLDER)?;
        if let Some(e) = t.sole_expression() {
            let mut it = interp::Interp::new(&self.limits, false);
            let (value, tainted) = it.eval_root(e, &ctx.scope())?;
            let mut fragments = it.fragments;
            let json = value::to_json_string(&value, "").map_err(|_| ExprError::Runtime {
                line: e.line,
                column: e.col,
                message: "Callable values cannot be serialized".into(),
            })?;
            let Some(json) = json else {
                return Ok(RenderedValue {
                    value: None,
                    secret_fragments: dedup(fragments),
                });
            };
            if json.len() > self.limits.max_output_bytes {
                return Err(ExprError::LimitExceeded {
                    limit: LimitKind::OutputSize,
                });
            }
            let parsed: Option<serde_json::Value> = serde_json::from_str(&json).ok();
            if tainted {
                if let Some(p) = &parsed {
                    collect_strings(p, &mut fragments);
                }
                fragments.push(json);
            }
            return Ok(RenderedValue {
                value: parsed,
                secret_fragments: dedup(fragments),
            });
        }
        let r = self.render(&t, ctx)?;
        Ok(RenderedValue {
            value: (!r.text.is_empty()).then_some(serde_json::Value::String(r.text)),
            secret_fragments: r.secret_fragments,
        })
    }

    /// Renders every string of a JSON tree with [`Engine::render_value`],
    /// dropping object entries and array items that render to nothing.
    pub fn render_tree(
        &self,
        v: &serde_json::Value,
        ctx: &Context,
    ) -> Result<RenderedValue, ExprError> {
        let mut fragments = Vec::new();
        let value = self.walk(v, ctx, &mut fragments, 0)?;
        Ok(RenderedValue {
            value,
            secret_fragments: dedup(fragments),
        })
    }

    fn walk(
        &self,
        v: &serde_json::Value,
        ctx: &Context,
        frags: &mut Vec<String>,
        depth: usize,
    ) -> Result<Option<serde_json::Value>, ExprError> {
        if depth > 256 {
            return Err(ExprError::LimitExceeded {
                limit: LimitKind::Depth,
            });
        }
        Ok(match v {
            serde_json::Value::String(s) => {
                let r = self.render_value(s, ctx)?;
                frags.extend(r.secret_fragments);
                r.value
            }
            serde_json::Value::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for item in a {
                    if let Some(x) = self.walk(item, ctx, frags, depth + 1)? {
                        out.push(x);
                    }
                }
                Some(serde_json::Value::Array(out))
            }
            serde_json::Value::Object(o) => {
                let mut out = serde_json::Map::new();
                for (k, item) in o {
                    if let Some(x) = self.walk(item, ctx, frags, depth + 1)? {
                        out.insert(k.clone(), x);
                    }
                }
                Some(serde_json::Value::Object(out))
            }
            other => Some(other.clone()),
        })
    }

    /// Parses every string of a JSON tree that contains `${{`, reporting all
    /// syntax errors and unknown filters.
    pub fn check_expressions(&self, v: &serde_json::Value) -> Result<(), Vec<ExprError>> {
        let mut errors = Vec::new();
        self.check(v, &mut errors, 0);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn check(&self, v: &serde_json::Value, errors: &mut Vec<ExprError>, depth: usize) {
        if depth > 256 {
            errors.push(ExprError::LimitExceeded {
                limit: LimitKind::Depth,
            });
            return;
        }
        match v {
            serde_json::Value::String(s) if s.contains("${{") => {
                match self.parse(s, Syntax::SCAFFOLDER) {
                    Ok(t) => errors.extend(
                        t.filters()
                            .filter(|f| !filters::is_known_filter(f, false))
                            .map(|f| ExprError::UnknownFilter {
                                name: f.to_string(),
                            }),
                    ),
                    Err(e) => errors.push(e),
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| self.check(x, errors, depth + 1)),
            serde_json::Value::Object(o) => {
                o.values().for_each(|x| self.check(x, errors, depth + 1))
            }
            _ => {}
        }
    }
}

fn collect_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => out.push(s.clone()),
        serde_json::Value::Number(n) => out.push(n.to_string()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.retain(|s| seen.insert(s.clone()));
    v
}
