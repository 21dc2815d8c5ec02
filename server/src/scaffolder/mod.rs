//! The scaffolder: software templates and the tasks that run them.

pub mod expr;
