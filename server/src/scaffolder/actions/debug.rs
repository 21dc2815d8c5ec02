//! `debug:log`: writes a message, and optionally the workspace, to the task log.

use serde_json::{json, Value};

use super::{Action, ActionContext, ActionError};

pub struct Log;

#[async_trait::async_trait]
impl Action for Log {
    fn id(&self) -> &'static str {
        "debug:log"
    }
    fn description(&self) -> &'static str {
        "Writes a message into the log and/or lists all files in the workspace."
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object", "properties": {
            "message": {"title": "Message to output.", "type": "string"},
            "listWorkspace": {
                "title": "List all files in the workspace, if true.",
                "anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["with-filenames", "with-contents"]}]
            },
            "extra": {"title": "Extra info"}
        }})
    }
    fn supports_dry_run(&self) -> bool {
        true
    }
    async fn run(&self, ctx: &mut ActionContext<'_>) -> Result<(), ActionError> {
        if let Some(m) = ctx.str_input("message") {
            ctx.log(m.to_string());
        }
        let mode = match ctx.input.get("listWorkspace") {
            Some(Value::Bool(true)) => "with-filenames",
            Some(Value::String(s)) => s.as_str(),
            _ => return Ok(()),
        };
        let with_contents = mode == "with-contents";
        let files = ctx.workspace.files()?;
        let mut lines = vec!["Workspace:".to_string()];
        for f in files {
            if with_contents && !f.symlink {
                lines.push(format!(
                    "  - {}:\n{}",
                    f.path,
                    String::from_utf8_lossy(&f.content)
                ));
            } else {
                lines.push(format!("  - {}", f.path));
            }
        }
        ctx.log(lines.join("\n"));
        Ok(())
    }
}
