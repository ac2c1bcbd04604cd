//! What GitOps tools conclude from an object's status, asked of the tools' own code: kstatus
//! (Flux's `wait`/`healthChecks`, kpt, `kstatus` CLI users), Flux's `healthCheckExprs` CEL
//! evaluator, and Argo CD's Lua health script run by a real Lua 5.1.
//!
//! The Argo script and the Flux expressions are the ones `docs/health-checks.md` tells users to
//! install (the script lives in `docs/health/argocd.lua`, the expressions in the doc's
//! Kustomization example), so a test of these verdicts is a test of the documentation. The
//! `kstatus` and `lua` peers come from `cargo xtask peers`.

use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde::Deserialize;
use serde_json::Value;

use crate::{peers, workspace_root};

/// Both peers answer in milliseconds; this only keeps a wedged one from hanging a test.
const PEER_TIMEOUT: Duration = Duration::from_secs(30);

/// The health statuses Argo CD accepts from a Lua script; any other becomes `Unknown`.
const ARGO_STATUSES: [&str; 6] = ["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"];

/// One tool's reading of an object: kstatus's `Current`/`InProgress`/`Failed`/`Terminating`/
/// `Unknown`, Flux CEL's `Current`/`InProgress`/`Failed`/`Unknown`, or Argo CD's health status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The status word, exactly as the tool spells it.
    pub status: String,
    /// The tool's explanation ("" when it gives none).
    pub message: String,
}

impl Verdict {
    /// A verdict from two string slices, for comparisons in tests.
    pub fn new(status: &str, message: &str) -> Self {
        Self { status: status.to_owned(), message: message.to_owned() }
    }
}

/// The kstatus peer's answer line.
#[derive(Debug, Deserialize)]
struct KstatusAnswer {
    status: String,
    message: String,
    #[serde(default)]
    cel: Option<String>,
    #[serde(default, rename = "celMessage")]
    cel_message: Option<String>,
}

/// kstatus's verdict (`sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute`) on `obj`. An error of
/// the library comes back as `Unknown` with the error as message, as its status readers report
/// it to Flux and kpt.
pub fn kstatus(obj: &Value) -> Result<Verdict> {
    let answer = ask_kstatus(obj, &[])?;
    Ok(Verdict { status: answer.status, message: answer.message })
}

/// Flux's verdict on `obj` with the `healthCheckExprs` documented in `docs/health-checks.md`
/// for its kind, evaluated by Flux's own evaluator (`github.com/fluxcd/pkg/runtime/cel`):
/// `InProgress` while `status.observedGeneration` differs from `metadata.generation`, then the
/// first of `inProgress`, `failed`, `current` that holds, else `InProgress`. An evaluation
/// error (such as an object without `status`) is `Unknown` with the error as message, which
/// Flux keeps waiting on.
pub fn flux_cel(obj: &Value) -> Result<Verdict> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).context("the object has no kind")?;
    let exprs = flux_health_exprs()?;
    let entry = exprs
        .iter()
        .find(|e| e.kind == kind && e.api_version == api_version)
        .with_context(|| format!("docs/health-checks.md has no healthCheckExprs for {api_version} {kind}"))?;
    let mut args = vec!["--cel-current", entry.current.as_str()];
    if let Some(failed) = &entry.failed {
        args.extend(["--cel-failed", failed.as_str()]);
    }
    if let Some(in_progress) = &entry.in_progress {
        args.extend(["--cel-inprogress", in_progress.as_str()]);
    }
    let answer = ask_kstatus(obj, &args)?;
    let status = answer.cel.context("the kstatus peer gave no CEL verdict")?;
    Ok(Verdict { status, message: answer.cel_message.unwrap_or_default() })
}

/// Argo CD's health verdict on `obj` from `docs/health/argocd.lua`, run as Argo CD runs it:
/// `obj` decoded into a Lua table (a JSON null is no key at all), only the base and table
/// libraries at hand, the returned table's `status` and `message` read back, and a status
/// Argo CD does not know turned into `Unknown`.
pub fn argo_health(obj: &Value) -> Result<Verdict> {
    let script = argo_script_path();
    ensure!(script.is_file(), "{} is missing", script.display());
    let driver = argo_driver(obj, &script);
    let lua = peers::binary("lua")?;
    let out = run_peer(&lua, &["-"], driver.as_bytes())?;
    let line = out.strip_suffix('\n').unwrap_or(&out);
    let (status, message) =
        line.split_once('\t').ok_or_else(|| anyhow!("the Lua driver printed {out:?}, not `status<TAB>message`"))?;
    if !ARGO_STATUSES.contains(&status) {
        return Ok(Verdict::new("Unknown", "Lua returned an invalid health status"));
    }
    Ok(Verdict::new(status, message))
}

/// The Argo CD health script users install.
pub fn argo_script_path() -> PathBuf {
    workspace_root().join("docs/health/argocd.lua")
}

/// The user documentation that holds the Flux expressions and the Argo CD ConfigMap.
pub fn health_doc_path() -> PathBuf {
    workspace_root().join("docs/health-checks.md")
}

/// One entry of a Flux Kustomization's `spec.healthCheckExprs`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxHealthExprs {
    /// API version of the kind the expressions judge.
    pub api_version: String,
    /// The kind the expressions judge.
    pub kind: String,
    /// True when the object is ready.
    pub current: String,
    /// True when the object cannot get ready without a change.
    #[serde(default)]
    pub failed: Option<String>,
    /// True while the object is being worked on.
    #[serde(default)]
    pub in_progress: Option<String>,
}

/// The `healthCheckExprs` of the Kustomization example in `docs/health-checks.md`.
pub fn flux_health_exprs() -> Result<Vec<FluxHealthExprs>> {
    let path = health_doc_path();
    let doc = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let block = fenced_blocks(&doc, "yaml")
        .into_iter()
        .find(|b| b.contains("kind: Kustomization") && b.contains("healthCheckExprs:"))
        .with_context(|| format!("{} has no yaml block with a Kustomization's healthCheckExprs", path.display()))?;
    let kustomization: Value = yaml_serde::from_str(&block).context("parsing the doc's Kustomization example")?;
    let exprs =
        kustomization.pointer("/spec/healthCheckExprs").cloned().context("the example has no spec.healthCheckExprs")?;
    serde_json::from_value(exprs).context("reading the example's healthCheckExprs")
}

/// The bodies of the fenced code blocks of a Markdown text whose info string is `lang`.
pub fn fenced_blocks(markdown: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        match current.as_mut() {
            None if trimmed.strip_prefix("```").is_some_and(|info| info.trim() == lang) => {
                current = Some(String::new())
            }
            None => {}
            Some(_) if trimmed.starts_with("```") => blocks.extend(current.take()),
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    blocks
}

fn ask_kstatus(obj: &Value, args: &[&str]) -> Result<KstatusAnswer> {
    let kstatus = peers::binary("kstatus")?;
    let input = serde_json::to_vec(obj)?;
    let out = run_peer(&kstatus, args, &input)?;
    serde_json::from_str(out.trim()).with_context(|| format!("the kstatus peer printed {out:?}"))
}

/// Runs a peer that reads all of stdin before it writes a little to stdout, and returns what it
/// wrote; a non-zero exit is an error carrying its stderr.
fn run_peer(program: &Path, args: &[&str], input: &[u8]) -> Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    // Dropping stdin after the write closes it, which is the peer's cue to answer; both peers
    // read to the end first, so writing before reading cannot deadlock.
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).with_context(|| format!("writing to {}", program.display()))?;
    }
    let deadline = Instant::now() + PEER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} did not answer within {PEER_TIMEOUT:?}", program.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout)?;
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr)?;
    }
    ensure!(status.success(), "{} {} failed ({status}): {}", program.display(), args.join(" "), stderr.trim());
    Ok(stdout)
}

/// A Lua 5.1 chunk that runs `script` as Argo CD does and prints `status<TAB>message`.
fn argo_driver(obj: &Value, script: &Path) -> String {
    let mut literal = String::new();
    lua_literal(obj, &mut literal);
    let mut path = String::new();
    lua_string(&script.to_string_lossy(), &mut path);
    format!(
        r#"local obj = {literal}
local script, load_error = loadfile({path})
if not script then
  io.stderr:write("loading the script: ", tostring(load_error), "\n")
  os.exit(3)
end
-- Argo CD opens only the base, package and table libraries (and a few os functions), not
-- string or math: a script that needs them fails there, so it fails here too.
local env = {{
  obj = obj, table = table, _VERSION = _VERSION,
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  rawequal = rawequal, rawget = rawget, rawset = rawset, select = select, tonumber = tonumber,
  tostring = tostring, type = type, unpack = unpack, xpcall = xpcall,
  getmetatable = getmetatable, setmetatable = setmetatable,
}}
env._G = env
setfenv(script, env)
local ok, hs = pcall(script)
if not ok then
  io.stderr:write("the script failed: ", tostring(hs), "\n")
  os.exit(4)
end
if type(hs) ~= "table" then
  io.stderr:write("expect table output from Lua script, not ", type(hs), "\n")
  os.exit(5)
end
local message = hs.message
if message == nil then message = "" end
io.write(tostring(hs.status), "\t", tostring(message), "\n")
"#
    )
}

/// Writes `value` as a Lua table constructor with the shape Argo CD's decoder gives it: objects
/// keyed by string, arrays 1-based, numbers as Lua numbers, and nulls left out (gopher-lua
/// stores no nil field and appends no nil element).
fn lua_literal(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("nil"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                write!(out, "{i}").ok();
            } else if let Some(u) = n.as_u64() {
                write!(out, "{u}").ok();
            } else {
                // Debug keeps a fraction or an exponent, both valid Lua number syntax.
                write!(out, "{:?}", n.as_f64().unwrap_or(0.0)).ok();
            }
        }
        Value::String(s) => lua_string(s, out),
        Value::Array(items) => {
            out.push('{');
            for item in items.iter().filter(|v| !v.is_null()) {
                lua_literal(item, out);
                out.push(',');
            }
            out.push('}');
        }
        Value::Object(map) => {
            out.push('{');
            for (key, item) in map.iter().filter(|(_, v)| !v.is_null()) {
                out.push('[');
                lua_string(key, out);
                out.push_str("]=");
                lua_literal(item, out);
                out.push(',');
            }
            out.push('}');
        }
    }
}

/// A Lua string literal holding exactly the bytes of `s`: printable ASCII as is, everything
/// else (quotes, backslashes, control bytes, UTF-8 sequences) as three-digit `\ddd` escapes,
/// which Lua 5.1 reads byte by byte and which no following digit can extend.
fn lua_string(s: &str, out: &mut String) {
    out.push('"');
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\' {
            out.push(char::from(b));
        } else {
            write!(out, "\\{b:03}").ok();
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn literal(v: &Value) -> String {
        let mut s = String::new();
        lua_literal(v, &mut s);
        s
    }

    #[test]
    fn json_becomes_a_lua_table_as_argo_decodes_it() {
        let v = json!({"a": [1, null, "x"], "b": null, "c": {"d": true, "e": -2.5}});
        assert_eq!(literal(&v), r#"{["a"]={1,"x",},["c"]={["d"]=true,["e"]=-2.5,},}"#);
        assert_eq!(literal(&json!([])), "{}");
        assert_eq!(literal(&json!(u64::MAX)), "18446744073709551615");
    }

    #[test]
    fn strings_are_escaped_byte_by_byte() {
        let mut s = String::new();
        lua_string("a\"b\\c\n]]é1", &mut s);
        assert_eq!(s, r#""a\034b\092c\010]]\195\1691""#);
    }

    #[test]
    fn finds_fenced_blocks_by_language() {
        let md = "text\n```yaml\na: 1\n```\n```sh\nls\n```\n  ```yaml\n  b: 2\n  ```\n";
        assert_eq!(fenced_blocks(md, "yaml"), ["a: 1\n", "  b: 2\n"]);
        assert_eq!(fenced_blocks(md, "sh"), ["ls\n"]);
    }

    #[test]
    fn the_doc_gives_flux_expressions_for_every_kind() {
        let exprs = flux_health_exprs().unwrap();
        let kinds: Vec<&str> = exprs.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["S3Bucket", "S3User", "S3Store", "ClusterS3Store"]);
        for e in &exprs {
            assert_eq!(e.api_version, "s3-resource-operator.io/v1alpha1");
            // One rule for all four kinds: the entries differ only in the kind they name.
            assert_eq!(
                (&e.current, &e.failed, &e.in_progress),
                (&exprs[0].current, &exprs[0].failed, &exprs[0].in_progress)
            );
            assert!(e.failed.is_some() && e.in_progress.is_some(), "{e:?}");
        }
    }

    #[test]
    fn the_doc_installs_the_shipped_argo_script_for_every_kind() {
        let doc = std::fs::read_to_string(health_doc_path()).unwrap();
        let script = std::fs::read_to_string(argo_script_path()).unwrap();
        let block = fenced_blocks(&doc, "yaml")
            .into_iter()
            .find(|b| b.contains("name: argocd-cm"))
            .expect("the doc shows the argocd-cm ConfigMap");
        let cm: Value = yaml_serde::from_str(&block).unwrap();
        for kind in ["S3Bucket", "S3User", "S3Store", "ClusterS3Store"] {
            let key = format!("resource.customizations.health.s3-resource-operator.io_{kind}");
            let inlined = cm["data"][&key].as_str().unwrap_or_else(|| panic!("no {key} in the doc's argocd-cm"));
            assert_eq!(inlined, script, "the doc's copy under {key} differs from docs/health/argocd.lua");
        }
    }
}
