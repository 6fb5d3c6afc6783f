//! `squall deploy NAME app.py` (or a directory with `app.py`): Python
//! functions, built with componentize-py.
//!
//! A function without dependencies runs on the shared Python runtime: one
//! component (CPython, the guest SDK `squall_sdk`), built once per machine
//! and cached, deployed under every Python function's name with the
//! function's own files in its environment value `SQUALL_PYTHON`. The node
//! keeps and compiles it once for all of them. A directory with a
//! `requirements.txt` (pure-Python packages), or files too large to travel
//! in a deploy's query, is built into a component of its own.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The componentize-py release the SDK is built and tested with.
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// The guest SDK and the WIT world, carried in the binary so a deploy
/// needs nothing of this repository.
const WIT: &str = include_str!("../../../wit/squall.wit");
const SDK: &[(&str, &str)] = &[
    ("squall_sdk/__init__.py", include_str!("../../../sdk/python/squall_sdk/__init__.py")),
    ("squall_sdk/_bytes.py", include_str!("../../../sdk/python/squall_sdk/_bytes.py")),
    ("squall_sdk/_entry.py", include_str!("../../../sdk/python/squall_sdk/_entry.py")),
    ("squall_sdk/calls.py", include_str!("../../../sdk/python/squall_sdk/calls.py")),
    ("squall_sdk/context.py", include_str!("../../../sdk/python/squall_sdk/context.py")),
    ("squall_sdk/errors.py", include_str!("../../../sdk/python/squall_sdk/errors.py")),
    ("squall_sdk/log.py", include_str!("../../../sdk/python/squall_sdk/log.py")),
    ("squall_sdk/messages.py", include_str!("../../../sdk/python/squall_sdk/messages.py")),
    ("squall_sdk/store.py", include_str!("../../../sdk/python/squall_sdk/store.py")),
    ("squall_sdk/py.typed", ""),
    ("squall_runtime.py", include_str!("../../../sdk/python/squall_runtime.py")),
];

/// The environment value that carries a function's files to the runtime.
pub const SOURCE_ENV: &str = "SQUALL_PYTHON";

/// Files whose `SQUALL_PYTHON` value takes more than this in a deploy's
/// query (percent-encoded) are built into their own component: a request
/// line holds at most 64 KiB.
const MAX_SHARED_QUERY: usize = 48 << 10;

/// What a Python deploy sends: a component, and the environment values it
/// adds to the user's.
pub struct Built {
    pub component: Vec<u8>,
    pub env: Vec<(String, String)>,
}

/// A function's `SQUALL_PYTHON` value in a line: its main module and files.
pub fn describe(spec: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(spec) else { return "(unreadable)".into() };
    let files: Vec<&str> = v["files"].as_object().map(|f| f.keys().map(String::as_str).collect()).unwrap_or_default();
    format!("main {}, on the shared runtime: {}", v["main"].as_str().unwrap_or("?"), files.join(", "))
}

/// True if `path` is a Python function: a `.py` file, or a directory with
/// an `app.py` (and no Cargo.toml).
pub fn is_python(path: &Path) -> bool {
    if path.is_dir() {
        return path.join("app.py").is_file() && !path.join("Cargo.toml").exists();
    }
    path.extension().is_some_and(|e| e == "py")
}

/// Builds (or finds cached) what deploys the Python function at `path`.
pub fn build(path: &Path) -> Result<Built> {
    let (files, main, requirements) = gather(path)?;
    let tool = Componentize::find()?;
    if requirements.is_none() {
        let spec = serde_json::json!({ "main": main, "files": files }).to_string();
        let query = crate::client::encode_query(&spec).len();
        if query <= MAX_SHARED_QUERY {
            let component = tool.runtime()?;
            return Ok(Built { component, env: vec![(SOURCE_ENV.to_string(), spec)] });
        }
        eprintln!(
            "the files take {query} bytes in a deploy's query, more than the shared runtime's {MAX_SHARED_QUERY}: \
             building a component of their own"
        );
    }
    Ok(Built { component: tool.own(path, &main, requirements.as_deref())?, env: Vec::new() })
}

/// The function's files (path inside the function, source), its main
/// module, and its requirements.txt if it lists anything.
type Gathered = (BTreeMap<String, String>, String, Option<PathBuf>);

fn gather(path: &Path) -> Result<Gathered> {
    let mut files = BTreeMap::new();
    if !path.is_dir() {
        let source = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let name = path.file_name().and_then(|n| n.to_str()).context("the file's name is not UTF-8")?;
        let main = name.trim_end_matches(".py").to_string();
        if !valid_module(&main) {
            bail!("{name}: a Python module's name is letters, digits and '_' (not starting with a digit)");
        }
        files.insert(name.to_string(), source);
        return Ok((files, main, None));
    }
    walk(path, path, &mut files)?;
    let requirements = path.join("requirements.txt");
    let listed = std::fs::read_to_string(&requirements)
        .is_ok_and(|r| r.lines().map(|l| l.split('#').next().unwrap_or_default().trim()).any(|l| !l.is_empty()));
    Ok((files, "app".to_string(), listed.then_some(requirements)))
}

fn valid_module(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Every `.py` file under `dir`, but in hidden directories, `__pycache__`
/// and virtual environments.
fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) -> Result<()> {
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            let skip = name.starts_with('.') || name == "__pycache__" || p.join("pyvenv.cfg").exists();
            if !skip {
                walk(root, &p, files)?;
            }
        } else if name.ends_with(".py") {
            let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().replace('\\', "/");
            let source = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
            files.insert(rel, source);
        }
    }
    Ok(())
}

/// The componentize-py on this machine.
struct Componentize {
    program: PathBuf,
    version: String,
}

impl Componentize {
    /// `$SQUALL_COMPONENTIZE_PY`, else `componentize-py` on the PATH.
    fn find() -> Result<Componentize> {
        let program =
            PathBuf::from(std::env::var_os("SQUALL_COMPONENTIZE_PY").unwrap_or_else(|| "componentize-py".into()));
        let Ok(out) = Command::new(&program).arg("--version").output() else {
            bail!(
                "componentize-py is not installed (it builds Python functions): \
                 `pip install componentize-py=={COMPONENTIZE_PY}`"
            );
        };
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || version.is_empty() {
            bail!(
                "{} --version failed: is componentize-py installed? `pip install componentize-py=={COMPONENTIZE_PY}`",
                program.display()
            );
        }
        if !version.ends_with(COMPONENTIZE_PY) {
            eprintln!("note: {version} found; squall's SDK is tested with componentize-py {COMPONENTIZE_PY}");
        }
        Ok(Componentize { program, version })
    }

    /// The shared runtime's component, from the cache or built now.
    fn runtime(&self) -> Result<Vec<u8>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (WIT, SDK, &self.version).hash(&mut h);
        let cache = cache_dir().join(format!("python-runtime-{:016x}.wasm", h.finish()));
        if let Ok(bytes) = std::fs::read(&cache) {
            return Ok(bytes);
        }
        let work = tempfile::tempdir().context("cannot make a temporary directory")?;
        let sdk = write_sdk(work.path())?;
        eprintln!("building the Python runtime with {} (once per machine) ...", self.version);
        let out = work.path().join("runtime.wasm");
        self.componentize(work.path(), &[&sdk], "squall_runtime", &out)?;
        let bytes = std::fs::read(&out)?;
        // Kept for the next deploy; a cache that cannot be written only costs time.
        // A file of its own for each writer, renamed into place: deploys at
        // once never see half a runtime.
        if let Some(dir) = cache.parent()
            && std::fs::create_dir_all(dir).is_ok()
            && let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir)
            && std::io::Write::write_all(&mut tmp, &bytes).is_ok()
        {
            let _ = tmp.persist(&cache);
        }
        Ok(bytes)
    }

    /// A component of the function's own: its directory (and what its
    /// requirements install) built in with the SDK.
    fn own(&self, path: &Path, main: &str, requirements: Option<&Path>) -> Result<Vec<u8>> {
        let work = tempfile::tempdir().context("cannot make a temporary directory")?;
        let sdk = write_sdk(work.path())?;
        let code =
            if path.is_dir() { path.to_path_buf() } else { path.parent().unwrap_or(Path::new(".")).to_path_buf() };
        let mut paths = vec![sdk, code];
        if let Some(req) = requirements {
            let deps = work.path().join("deps");
            eprintln!("installing {} ...", req.display());
            let python = std::env::var_os("SQUALL_PYTHON_BIN").unwrap_or_else(|| "python3".into());
            let status = Command::new(python)
                .args(["-m", "pip", "install", "--quiet", "--no-compile", "--target"])
                .arg(&deps)
                .arg("-r")
                .arg(req)
                .status()
                .context("cannot run python3 -m pip")?;
            if !status.success() {
                bail!("pip could not install {} (only pure-Python packages work in a function)", req.display());
            }
            paths.push(deps);
        }
        let entry = work.path().join("entry");
        std::fs::create_dir_all(&entry)?;
        std::fs::write(
            entry.join("squall_main.py"),
            format!("from squall_sdk._entry import WitWorld, bind\n\nbind({main:?})\n"),
        )?;
        paths.push(entry);
        eprintln!("building {} with {} ...", path.display(), self.version);
        let out = work.path().join("function.wasm");
        let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        self.componentize(work.path(), &refs, "squall_main", &out)?;
        Ok(std::fs::read(&out)?)
    }

    fn componentize(&self, work: &Path, paths: &[&Path], module: &str, out: &Path) -> Result<()> {
        let mut cmd = Command::new(&self.program);
        cmd.arg("-d").arg(work.join("wit")).args(["-w", "handler-with-init", "componentize"]);
        for p in paths {
            cmd.arg("-p").arg(p);
        }
        cmd.arg(module).arg("-o").arg(out).current_dir(work);
        let output = cmd.output().with_context(|| format!("cannot run {}", self.program.display()))?;
        if !output.status.success() {
            let err = String::from_utf8_lossy(&output.stderr);
            bail!("componentize-py failed:\n{}", err.trim_end());
        }
        Ok(())
    }
}

/// Writes the WIT and the SDK into `dir`; returns the SDK's path.
fn write_sdk(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir.join("wit"))?;
    std::fs::write(dir.join("wit/squall.wit"), WIT)?;
    let sdk = dir.join("sdk");
    for (path, text) in SDK {
        let p = sdk.join(path);
        std::fs::create_dir_all(p.parent().expect("a file in a directory"))?;
        std::fs::write(p, text)?;
    }
    Ok(sdk)
}

/// `$SQUALL_CACHE_DIR`, else `$XDG_CACHE_HOME/squall`, else `~/.cache/squall`.
fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SQUALL_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("squall");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/squall"),
        None => std::env::temp_dir().join("squall-cache"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_function_is_a_py_file_or_a_directory_with_app_py() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_python(dir.path()));
        std::fs::write(dir.path().join("app.py"), "def handle(x):\n    return x\n").unwrap();
        std::fs::create_dir_all(dir.path().join("lib/__pycache__")).unwrap();
        std::fs::write(dir.path().join("lib/__init__.py"), "").unwrap();
        std::fs::write(dir.path().join("lib/__pycache__/x.py"), "").unwrap();
        std::fs::write(dir.path().join("requirements.txt"), "# nothing\n\n").unwrap();
        assert!(is_python(dir.path()));
        assert!(is_python(&dir.path().join("app.py")));
        let (files, main, requirements) = gather(dir.path()).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["app.py", "lib/__init__.py"]);
        assert_eq!((main.as_str(), requirements), ("app", None));
        std::fs::write(dir.path().join("requirements.txt"), "six==1.16.0\n").unwrap();
        assert!(gather(dir.path()).unwrap().2.is_some());
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        assert!(!is_python(dir.path()));
        std::fs::write(dir.path().join("9lives.py"), "").unwrap();
        assert!(gather(&dir.path().join("9lives.py")).is_err());
    }
}
