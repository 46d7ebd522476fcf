//! Bounds on untrusted text, checked before it is parsed: how deeply it nests and how large a
//! configuration file may be.
//!
//! The parsers Loupe uses do not all protect themselves. libyaml (under `serde_norway`) spends
//! time quadratic in the nesting depth before any recursion limit of the deserializer is reached
//! (100k levels of `[` took 17 s, 200k over a minute), and a hand-written XML reader that keeps
//! its open elements pays for each of them per element. So deep nesting is measured by a cheap
//! linear scan first and refused with the limit named:
//! - JSON: serde_json's own recursion limit (128) already refuses quickly; importers rewrite its
//!   message to name the limit ([`json_depth_reason`]).
//! - XML (VOC, CVAT): the readers count open elements and refuse the element past the limit.
//! - YAML (`data.yaml`) and TOML (model descriptors): [`check_yaml`] and [`check_toml`] below.
//!
//! The YAML scan follows YAML's quoting closely enough for real files and for what the fuzzers
//! tried, but it is not a YAML parser: indentation, `- `/`? ` indicators and flow brackets outside
//! quoted scalars and comments are what it counts.

/// The deepest nesting accepted in untrusted JSON, YAML and XML. Real annotation
/// files nest fewer than 10 levels; 128 is also serde_json's own recursion limit.
pub const MAX_NESTING_DEPTH: usize = 128;

/// The deepest nesting accepted in TOML (model descriptors, which nest 2 levels). Lower than
/// [`MAX_NESTING_DEPTH`] because the toml crate refuses at about 80 levels on its own, with a
/// message that quotes the whole line and does not name its limit.
pub const MAX_TOML_NESTING_DEPTH: usize = 64;

/// The largest configuration file read whole: an ultralytics `data.yaml`, a Darknet `obj.data`,
/// a model descriptor. Real ones are a few kilobytes (LVIS's 1,203 class names are about 30 KB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Text nested deeper than [`MAX_NESTING_DEPTH`], found before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("nested deeper than the limit of {limit} levels; refused before parsing")]
pub struct TooDeep {
    /// The limit that was passed.
    pub limit: usize,
    /// The 1-based line where the nesting went past it.
    pub line: usize,
}

/// The reason to give for a serde_json error, naming the depth limit when that is what stopped
/// it (serde_json says only "recursion limit exceeded"); other errors keep their own message.
#[must_use]
pub fn json_depth_reason(message: &str) -> Option<String> {
    message
        .starts_with("recursion limit exceeded")
        .then(|| format!("nested deeper than the limit of {MAX_NESTING_DEPTH} levels; refused"))
}

/// Checks the nesting depth of JSON: open arrays and objects outside strings. One pass over the
/// bytes, much cheaper than parsing them; needed because serde_json skips the fields a type
/// ignores without counting their depth.
///
/// # Errors
///
/// [`TooDeep`] at the first line where the depth exceeds `limit`.
pub fn check_json(bytes: &[u8], limit: usize) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > limit {
                        let line = bytes[..i].iter().filter(|&&c| c == b'\n').count() + 1;
                        return Err(TooDeep { limit, line });
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        i += 1;
    }
    Ok(())
}

/// Checks the nesting depth of YAML text: open block levels (indentation, and compact `- `/`? `
/// entries on one line) plus open flow collections (`[`, `{`).
///
/// # Errors
///
/// [`TooDeep`] at the first line where the depth exceeds `limit`.
pub fn check_yaml(text: &str, limit: usize) -> Result<(), TooDeep> {
    // Indentation columns of the open block levels.
    let mut block: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    // An open quoted scalar (it may span lines), by its quote byte.
    let mut quote: Option<u8> = None;
    // The indentation of the line that started a literal or folded block scalar (`|`, `>`):
    // the more indented lines after it are text, not structure.
    let mut block_scalar_parent: Option<usize> = None;
    for (index, line) in text.lines().enumerate() {
        let too_deep = TooDeep {
            limit,
            line: index + 1,
        };
        let bytes = line.as_bytes();
        let indent = bytes.iter().take_while(|&&b| b == b' ').count();
        let blank = bytes[indent..].iter().all(|b| b.is_ascii_whitespace());
        if let Some(parent) = block_scalar_parent {
            if blank || indent > parent {
                continue;
            }
            block_scalar_parent = None;
        }
        let mut pos = 0;
        if quote.is_none() && flow == 0 {
            if blank || bytes.get(indent) == Some(&b'#') {
                continue;
            }
            while block.last().is_some_and(|&top| top > indent) {
                block.pop();
            }
            if block.last() != Some(&indent) {
                block.push(indent);
            }
            pos = indent;
            // `- - - x` and `? - x` open one level per indicator on a single line.
            while let Some(&b) = bytes.get(pos) {
                let next = bytes.get(pos + 1);
                if !(matches!(b, b'-' | b'?') && next.is_none_or(|&n| n == b' ' || n == b'\t')) {
                    break;
                }
                pos += 1;
                while matches!(bytes.get(pos), Some(b' ' | b'\t')) {
                    pos += 1;
                }
                block.push(pos);
            }
            if block.len() > limit {
                return Err(too_deep);
            }
        }
        // Whether the next byte may start a token (a quoted scalar, a flow collection): at the
        // start of the line's content or after an indicator, not inside a plain scalar.
        let mut token_start = true;
        let mut i = pos;
        while let Some(&b) = bytes.get(i) {
            if let Some(q) = quote {
                if q == b'"' && b == b'\\' {
                    i += 2;
                    continue;
                }
                if b == q {
                    if q == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    quote = None;
                    token_start = false;
                }
                i += 1;
                continue;
            }
            let after_space = i == 0 || matches!(bytes[i - 1], b' ' | b'\t');
            let next_is_space = bytes.get(i + 1).is_none_or(|&n| n == b' ' || n == b'\t');
            match b {
                b' ' | b'\t' => {}
                b'#' if after_space => break,
                b'"' | b'\'' if token_start => quote = Some(b),
                b'[' | b'{' if token_start || flow > 0 => {
                    flow += 1;
                    if block.len() + flow > limit {
                        return Err(too_deep);
                    }
                    token_start = true;
                }
                b']' | b'}' if flow > 0 => {
                    flow -= 1;
                    token_start = false;
                }
                b',' if flow > 0 => token_start = true,
                // In flow collections a value may follow `:` directly (`{"a":[1]}`).
                b':' if next_is_space || flow > 0 => token_start = true,
                b'-' | b'?' if token_start && next_is_space => {}
                b'|' | b'>' if token_start && flow == 0 => {
                    let header = line[i + 1..]
                        .trim_start_matches(|c: char| c == '-' || c == '+' || c.is_ascii_digit());
                    let header = header.trim_start();
                    if header.is_empty() || header.starts_with('#') {
                        block_scalar_parent = Some(indent);
                        break;
                    }
                    token_start = false;
                }
                _ => token_start = false,
            }
            i += 1;
        }
    }
    Ok(())
}

/// Checks the nesting depth of TOML text: open arrays and inline tables (`[`, `{` in values)
/// outside strings and comments, and the parts of dotted keys and table headers.
///
/// # Errors
///
/// [`TooDeep`] at the first line where the depth exceeds `limit`.
pub fn check_toml(text: &str, limit: usize) -> Result<(), TooDeep> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    // Dots seen in the current key or header since the last `=`, `,`, `{` or line end.
    let mut dots = 0usize;
    let mut line = 1usize;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let too_deep = TooDeep { limit, line };
        match b {
            b'\n' => {
                line += 1;
                dots = 0;
            }
            b'#' => {
                while bytes.get(i + 1).is_some_and(|&n| n != b'\n') {
                    i += 1;
                }
            }
            b'"' | b'\'' => {
                let triple = bytes.get(i + 1) == Some(&b) && bytes.get(i + 2) == Some(&b);
                i += if triple { 3 } else { 1 };
                while let Some(&c) = bytes.get(i) {
                    if c == b'\n' {
                        line += 1;
                    }
                    if b == b'"' && c == b'\\' {
                        i += 2;
                        continue;
                    }
                    if c == b {
                        if !triple {
                            break;
                        }
                        if bytes.get(i + 1) == Some(&b) && bytes.get(i + 2) == Some(&b) {
                            // A closing `"""` may be followed by up to two more quotes that
                            // belong to the string.
                            i += 2;
                            while bytes.get(i + 1) == Some(&b) {
                                i += 1;
                            }
                            break;
                        }
                    }
                    i += 1;
                }
            }
            b'[' | b'{' => {
                depth += 1;
                dots = 0;
                if depth > limit {
                    return Err(too_deep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'=' | b',' => dots = 0,
            b'.' => {
                dots += 1;
                if depth + dots > limit {
                    return Err(too_deep);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_yaml_passes() {
        let text = "path: ../datasets/coco8 # root\ntrain: images/train\nval: [images/val, 'b]']\n\
                    names:\n  0: person\n  1: \"bi[cycle\"\n  2: it's\nlist:\n- a\n- - b\n  - c\n\
                    text: |\n  [[[[ not structure\n    {{{{\nflow: {a: [1, 2], b: {c: d}}\n";
        assert_eq!(check_yaml(text, 4), Ok(()));
    }

    #[test]
    fn deep_yaml_is_found_in_each_form() {
        let flow = format!("a: {}1{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            check_yaml(&flow, 128),
            Err(TooDeep {
                limit: 128,
                line: 1
            })
        );
        let json_like = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
        assert!(check_yaml(&json_like, 128).is_err());
        let compact = format!("{}x", "- ".repeat(200));
        assert!(check_yaml(&compact, 128).is_err());
        let block: String = (0..200).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        assert_eq!(
            check_yaml(&block, 128),
            Err(TooDeep {
                limit: 128,
                line: 129
            })
        );
        // Quoted closers do not close anything.
        let quoted = format!("a: {}", "[\"]\", ".repeat(200));
        assert!(check_yaml(&quoted, 128).is_err());
    }

    #[test]
    fn toml_depth_counts_brackets_and_dots_outside_strings() {
        let real = "decoder = \"yolov8\"\nnames = [\"a]]]\", '''b\n[[[''', \"\"\"c\"\"\"\"]\n\
                    [input]\nsize = { w = 640, h = 640 } # [[[[\na.b.c = 1\n";
        assert_eq!(check_toml(real, 3), Ok(()));
        let deep = format!("a = {}1{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            check_toml(&deep, 128),
            Err(TooDeep {
                limit: 128,
                line: 1
            })
        );
        let dotted = format!("[{}]\n", vec!["k"; 200].join("."));
        assert!(check_toml(&dotted, 128).is_err());
    }

    #[test]
    fn json_depth_ignores_strings() {
        let real = br#"{"a": [1, {"b": "]]]\"[[[["}], "c": "{{{{"}"#;
        assert_eq!(check_json(real, 3), Ok(()));
        assert_eq!(check_json(real, 2), Err(TooDeep { limit: 2, line: 1 }));
        let deep = format!("{{\"a\":\n{}1{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            check_json(deep.as_bytes(), 128),
            Err(TooDeep {
                limit: 128,
                line: 2
            })
        );
    }

    #[test]
    fn json_depth_reason_names_the_limit() {
        let reason = json_depth_reason("recursion limit exceeded").expect("recognised");
        assert!(reason.contains("128"), "{reason}");
        assert_eq!(json_depth_reason("EOF while parsing a value"), None);
    }
}
