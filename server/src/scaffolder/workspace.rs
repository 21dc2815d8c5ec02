//! Paths inside a directory that nothing may leave: a task's workspace, a
//! template's own directory, a publish root.
//!
//! A relative path is resolved lexically first (no absolute paths, no `..`
//! that climbs out), then every component that exists is checked on disk: a
//! symlink, or a chain of them, must end inside the root, and a dangling one
//! is refused, since writing through it would create its target wherever it
//! points. Writes never follow a symlink at the final component.

use std::io;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("{0:?} is an absolute path; only paths relative to the workspace are allowed")]
    Absolute(String),
    #[error("{0:?} leaves the workspace")]
    Escapes(String),
    #[error("{0:?} goes through a symbolic link that points outside the workspace")]
    SymlinkEscapes(String),
    #[error("{0:?} goes through a dangling symbolic link")]
    DanglingSymlink(String),
    #[error("{path:?}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &str) -> impl FnOnce(io::Error) -> PathError + '_ {
    move |source| PathError::Io {
        path: path.to_string(),
        source,
    }
}

/// A directory and everything below it.
#[derive(Debug, Clone)]
pub struct Confined {
    root: PathBuf,
}

/// One file of a tree, as read for a dry-run or a publish.
#[derive(Debug, Clone)]
pub struct TreeFile {
    /// Relative, `/`-separated.
    pub path: String,
    pub executable: bool,
    /// The file's contents, or a symbolic link's target.
    pub content: Vec<u8>,
    pub symlink: bool,
}

impl Confined {
    /// The directory, which must exist; it is canonicalized once.
    pub fn open(root: &Path) -> Result<Confined, PathError> {
        let shown = root.display().to_string();
        let root = std::fs::canonicalize(root).map_err(io_err(&shown))?;
        Ok(Confined { root })
    }

    /// Creates the directory if needed, then opens it.
    pub fn create(root: &Path) -> Result<Confined, PathError> {
        let shown = root.display().to_string();
        std::fs::create_dir_all(root).map_err(io_err(&shown))?;
        Confined::open(root)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves `rel` to a path inside the root (see the module's rules).
    pub fn resolve(&self, rel: &str) -> Result<PathBuf, PathError> {
        let normal = normalize(rel)?;
        let mut at = self.root.clone();
        for part in normal.components() {
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() => match std::fs::canonicalize(&at) {
                    Ok(target) if target.starts_with(&self.root) => {}
                    Ok(_) => return Err(PathError::SymlinkEscapes(rel.to_string())),
                    Err(_) => return Err(PathError::DanglingSymlink(rel.to_string())),
                },
                Ok(_) => {}
                // Nothing below a missing component can be a link yet.
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => return Err(io_err(rel)(e)),
            }
        }
        Ok(self.root.join(normal))
    }

    /// A confined view of a subdirectory, created if missing.
    pub fn subdir(&self, rel: &str) -> Result<Confined, PathError> {
        let path = self.resolve(rel)?;
        std::fs::create_dir_all(&path).map_err(io_err(rel))?;
        let sub = Confined::open(&path)?;
        if !sub.root.starts_with(&self.root) {
            return Err(PathError::SymlinkEscapes(rel.to_string()));
        }
        Ok(sub)
    }

    /// Writes a file, creating its directories; a symlink in its place is refused.
    pub fn write(&self, rel: &str, content: &[u8], mode: Option<u32>) -> Result<(), PathError> {
        let path = self.resolve(rel)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(rel))?;
        }
        // Directories created above may have raced with a link; check again.
        let path = self.resolve(rel)?;
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if meta.file_type().is_symlink() {
                std::fs::remove_file(&path).map_err(io_err(rel))?;
            }
        }
        write_no_follow(&path, content, mode).map_err(io_err(rel))
    }

    /// Makes a symbolic link at `rel` whose target stays inside the root.
    pub fn symlink(&self, rel: &str, target: &str) -> Result<(), PathError> {
        let path = self.resolve(rel)?;
        let base = Path::new(rel).parent().unwrap_or(Path::new(""));
        let joined = base.join(target);
        let target_rel = joined.to_string_lossy();
        if Path::new(target).is_absolute() || normalize(&target_rel).is_err() {
            return Err(PathError::SymlinkEscapes(rel.to_string()));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(rel))?;
        }
        if std::fs::symlink_metadata(&path).is_ok() {
            std::fs::remove_file(&path).map_err(io_err(rel))?;
        }
        #[cfg(unix)]
        std::os::unix::fs::symlink(target, &path).map_err(io_err(rel))?;
        Ok(())
    }

    /// Visits every entry below the root, without following links, each with
    /// its path, its root-relative name and its type; directories are entered.
    fn walk(
        &self,
        mut visit: impl FnMut(&Path, String, std::fs::FileType) -> Result<(), PathError>,
    ) -> Result<(), PathError> {
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let shown = dir.display().to_string();
            let entries = std::fs::read_dir(&dir)
                .map_err(io_err(&shown))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(io_err(&shown))?;
            for entry in entries {
                let path = entry.path();
                let rel = relative(&self.root, &path);
                let ft = entry.file_type().map_err(io_err(&rel))?;
                if ft.is_dir() {
                    stack.push(path.clone());
                }
                visit(&path, rel, ft)?;
            }
        }
        Ok(())
    }

    /// Every file below the root, without following links, in path order.
    /// Links whose target leaves the root, or dangles, are refused.
    pub fn files(&self) -> Result<Vec<TreeFile>, PathError> {
        let mut out = Vec::new();
        self.walk(|path, rel, ft| {
            if ft.is_symlink() {
                // Checks the chain ends inside.
                self.resolve(&rel)?;
                let target = std::fs::read_link(path).map_err(io_err(&rel))?;
                out.push(TreeFile {
                    path: rel,
                    executable: false,
                    content: target.to_string_lossy().into_owned().into_bytes(),
                    symlink: true,
                });
            } else if ft.is_file() {
                let meta = std::fs::symlink_metadata(path).map_err(io_err(&rel))?;
                let content = std::fs::read(path).map_err(io_err(&rel))?;
                out.push(TreeFile {
                    path: rel,
                    executable: is_executable(&meta),
                    content,
                    symlink: false,
                });
            }
            Ok(())
        })?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Every entry below the root, directories marked with a trailing `/`, as
    /// globby lists them for `fetch:template`; links are not followed.
    pub fn entries(&self) -> Result<Vec<String>, PathError> {
        let mut out = Vec::new();
        self.walk(|_, rel, ft| {
            out.push(if ft.is_dir() { format!("{rel}/") } else { rel });
            Ok(())
        })?;
        out.sort();
        Ok(out)
    }
}

/// Lexical resolution: refuses absolute paths and `..` above the start.
pub fn normalize(rel: &str) -> Result<PathBuf, PathError> {
    let mut out = PathBuf::new();
    let mut depth = 0usize;
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => {
                out.push(p);
                depth += 1;
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return Err(PathError::Escapes(rel.to_string()));
                }
                out.pop();
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(PathError::Absolute(rel.to_string()))
            }
        }
    }
    Ok(out)
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

/// The permission bits of a file, to carry over when it is copied.
#[cfg(unix)]
pub fn mode_of(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(meta.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
pub fn mode_of(_: &std::fs::Metadata) -> Option<u32> {
    None
}

fn write_no_follow(path: &Path, content: &[u8], mode: Option<u32>) -> io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NOFOLLOW: a link swapped in after the checks makes the open fail.
        options.custom_flags(libc::O_NOFOLLOW);
        if let Some(m) = mode {
            options.mode(m);
        }
    }
    let mut f = options.open(path)?;
    f.write_all(content)?;
    #[cfg(unix)]
    if let Some(m) = mode {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(m))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> (tempfile::TempDir, Confined) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Confined::create(&dir.path().join("ws")).expect("workspace");
        (dir, ws)
    }

    #[test]
    fn lexical_rules() {
        assert!(matches!(
            normalize("/etc/passwd"),
            Err(PathError::Absolute(_))
        ));
        assert!(matches!(normalize("../x"), Err(PathError::Escapes(_))));
        assert!(matches!(normalize("a/../../x"), Err(PathError::Escapes(_))));
        assert_eq!(normalize("a/./b/../c").expect("ok"), PathBuf::from("a/c"));
        assert_eq!(normalize("./").expect("ok"), PathBuf::new());
    }

    #[cfg(unix)]
    #[test]
    fn links_out_chains_and_dangling_links_are_refused() {
        let (dir, ws) = tmp();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, ws.root().join("out")).expect("link");
        std::os::unix::fs::symlink("out", ws.root().join("chain")).expect("link");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), ws.root().join("dangling"))
            .expect("link");
        std::fs::create_dir(ws.root().join("inside")).expect("mkdir");
        std::os::unix::fs::symlink("inside", ws.root().join("ok")).expect("link");
        assert!(matches!(
            ws.resolve("out/x"),
            Err(PathError::SymlinkEscapes(_))
        ));
        assert!(matches!(
            ws.resolve("chain/x"),
            Err(PathError::SymlinkEscapes(_))
        ));
        assert!(matches!(
            ws.write("dangling", b"x", None),
            Err(PathError::DanglingSymlink(_))
        ));
        assert!(!dir.path().join("nowhere").exists());
        ws.write("ok/file", b"fine", None).expect("inside link");
        assert_eq!(
            std::fs::read(ws.root().join("inside/file")).expect("read"),
            b"fine"
        );
        assert!(ws.files().is_err(), "a tree with a link out is refused");
        assert!(ws.symlink("x", "../../etc/passwd").is_err());
        assert!(ws.symlink("x", "/etc/passwd").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn modes_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, ws) = tmp();
        ws.write("bin/run.sh", b"#!/bin/sh\n", Some(0o755))
            .expect("write");
        let files = ws.files().expect("files");
        assert_eq!(files.len(), 1);
        assert!(files[0].executable);
        let mode = std::fs::metadata(ws.root().join("bin/run.sh"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(ws.entries().expect("entries"), vec!["bin/", "bin/run.sh"]);
    }
}
