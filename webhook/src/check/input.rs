//! Reads manifests for `check`: files, directories (recursively, `*.yaml`, `*.yml`,
//! `*.json`), or `-` for stdin; multi-document YAML, JSON, and `kind: List`.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use serde_json::Value;

/// One object from the input, with where it came from.
#[derive(Debug, Clone)]
pub struct SourceObject {
    /// `file:line` of the document (or list item's document).
    pub source: String,
    pub value: Value,
}

/// Expands `paths` into the files to read, in a stable order.
pub fn files(paths: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p == "-" {
            out.push(PathBuf::from("-"));
            continue;
        }
        let path = PathBuf::from(p);
        let meta = std::fs::metadata(&path).map_err(|e| format!("{p}: {e}"))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(&path, &mut found).map_err(|e| format!("{p}: {e}"))?;
            found.sort();
            if found.is_empty() {
                return Err(format!(
                    "{p}: no *.yaml, *.yml or *.json files in this directory"
                ));
            }
            out.extend(found);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads every object of one file (`-` is stdin).
pub fn read(file: &Path) -> Result<Vec<SourceObject>, String> {
    let name = file.display().to_string();
    let name = if name == "-" {
        "<stdin>".to_string()
    } else {
        name
    };
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("{name}: {e}"))?;
        text
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("{name}: {e}"))?
    };
    parse(&name, &text)
}

/// Parses the documents of `text` (YAML is a superset of JSON).
pub fn parse(name: &str, text: &str) -> Result<Vec<SourceObject>, String> {
    let docs: Vec<serde_saphyr::Spanned<Value>> =
        serde_saphyr::from_multiple(text).map_err(|e| format!("{name}: {e}"))?;
    let mut out = Vec::new();
    for doc in docs {
        let source = format!("{name}:{}", doc.referenced.line());
        match doc.value {
            Value::Object(_) if doc.value.get("kind").and_then(Value::as_str) == Some("List") => {
                match doc.value.get("items") {
                    Some(Value::Array(items)) => {
                        for (i, item) in items.iter().enumerate() {
                            out.push(SourceObject {
                                source: format!("{source} (items[{i}])"),
                                value: item.clone(),
                            });
                        }
                    }
                    None | Some(Value::Null) => {}
                    Some(_) => return Err(format!("{source}: kind List needs an items array")),
                }
            }
            Value::Object(_) => out.push(SourceObject {
                source,
                value: doc.value,
            }),
            other => {
                return Err(format!(
                    "{source}: expected a Kubernetes object (a mapping with apiVersion and kind), found {}",
                    short(&other)
                ))
            }
        }
    }
    Ok(out)
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
