//! `revkv txn`: etcdctl's transaction format read from standard input.
//!
//! Three blocks separated by an empty line: the compares, the requests run
//! when every compare holds, the requests run otherwise. A compare is
//! `TARGET("KEY") OP "VALUE"` with TARGET one of `val`/`value`,
//! `ver`/`version`, `c`/`create`, `m`/`mod`, `lease` and OP one of `=`,
//! `!=`, `<`, `>`; a request is a `put`, `get` or `del` command line as the
//! top-level commands take it, with Go-style double-quoted arguments.

use clap::Parser;
use revkv::mvcc::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};

use crate::{DelArgs, GetArgs, PutArgs};

/// One request line, parsed with the same arguments as the top-level
/// commands.
#[derive(Parser)]
#[command(no_binary_name = true)]
enum Request {
    Put(PutArgs),
    Get(GetArgs),
    #[command(alias = "delete")]
    Del(DelArgs),
}

fn invalid(msg: String) -> revkv::Error {
    revkv::Error::InvalidOption(msg)
}

/// Parses the whole standard input of `txn`.
pub fn parse(input: &str) -> revkv::Result<TxnRequest> {
    let mut blocks: [Vec<&str>; 3] = Default::default();
    let mut at = 0;
    for line in input.lines() {
        let line = line.trim();
        if line.is_empty() {
            at += 1;
            if at > 2 {
                break;
            }
            continue;
        }
        blocks[at].push(line);
    }
    let [compares, success, failure] = blocks;
    Ok(TxnRequest {
        compare: compares
            .into_iter()
            .map(parse_compare)
            .collect::<revkv::Result<_>>()?,
        success: success
            .into_iter()
            .map(parse_request)
            .collect::<revkv::Result<_>>()?,
        failure: failure
            .into_iter()
            .map(parse_request)
            .collect::<revkv::Result<_>>()?,
    })
}

/// `TARGET("KEY") OP "VALUE"`, etcdctl's `parseCompare`.
fn parse_compare(line: &str) -> revkv::Result<Compare> {
    let malformed = || invalid(format!("malformed comparison: {line}"));
    let (target, rest) = line.split_once('(').ok_or_else(malformed)?;
    let (key, rest) = quoted(rest.trim_start()).ok_or_else(malformed)?;
    let rest = rest.strip_prefix(')').ok_or_else(malformed)?.trim_start();
    let (op, rest) = rest.split_once(' ').ok_or_else(malformed)?;
    let (value, rest) = quoted(rest.trim_start()).ok_or_else(malformed)?;
    if !rest.trim().is_empty() {
        return Err(malformed());
    }
    let result = match op {
        "=" | "==" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        _ => {
            return Err(invalid(format!(
                "malformed comparison: {line} (unknown op {op})"
            )))
        }
    };
    let number = || {
        String::from_utf8_lossy(&value)
            .parse::<i64>()
            .map_err(|e| invalid(format!("malformed comparison: {line} ({e})")))
    };
    let target = match target.trim() {
        "val" | "value" => CompareTarget::Value(value.clone()),
        "ver" | "version" => CompareTarget::Version(number()?),
        "c" | "create" => CompareTarget::CreateRevision(number()?),
        "m" | "mod" => CompareTarget::ModRevision(number()?),
        "lease" => CompareTarget::Lease(number()?),
        t => {
            return Err(invalid(format!(
                "malformed comparison: {line} (unknown target {t})"
            )))
        }
    };
    Ok(Compare::new(key, result, target))
}

/// A request line: split like etcdctl's `argify`, then parsed as a command.
fn parse_request(line: &str) -> revkv::Result<RequestOp> {
    let args = argify(line).ok_or_else(|| invalid(format!("malformed request: {line}")))?;
    let req = Request::try_parse_from(&args)
        .map_err(|e| invalid(format!("invalid txn request {line:?}: {}", first_line(&e))))?;
    Ok(match req {
        Request::Put(p) => RequestOp::Put(PutRequest {
            key: p.key.into_bytes(),
            value: p.value.into_bytes(),
            lease: 0,
            prev_kv: p.prev_kv,
        }),
        Request::Get(g) => {
            let r = g.keys.range();
            RequestOp::Range(RangeRequest {
                key: r.key.clone().into_bytes(),
                range_end: r.end(),
                options: g.options(),
            })
        }
        Request::Del(d) => {
            let r = d.keys.range();
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: r.key.clone().into_bytes(),
                range_end: r.end(),
                prev_kv: d.prev_kv,
            })
        }
    })
}

fn first_line(e: &clap::Error) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string()
}

/// Splits on spaces, keeping double-quoted arguments whole (and unquoted).
fn argify(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if rest.starts_with('"') {
            let (bytes, after) = quoted(rest)?;
            out.push(String::from_utf8(bytes).ok()?);
            rest = after.trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    Some(out)
}

/// A Go double-quoted string at the start of `s` (escapes `\\`, `\"`, `\n`,
/// `\t`, `\r`, `\xNN`): its bytes and what follows it.
fn quoted(s: &str) -> Option<(Vec<u8>, &str)> {
    let mut chars = s.strip_prefix('"')?.char_indices();
    let body = &s[1..];
    let mut out = Vec::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => match chars.next()?.1 {
                '\\' => out.push(b'\\'),
                '"' => out.push(b'"'),
                'n' => out.push(b'\n'),
                't' => out.push(b'\t'),
                'r' => out.push(b'\r'),
                '0' => out.push(0),
                'x' => {
                    let hi = chars.next()?.1.to_digit(16)?;
                    let lo = chars.next()?.1.to_digit(16)?;
                    out.push((hi * 16 + lo) as u8);
                }
                _ => return None,
            },
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcdctl_example_parses() {
        let req = parse(
            "mod(\"key1\") > \"0\"\n\nput key1 \"overwrote-key1\"\n\nput key1 \"created-key1\"\nput key2 \"some extra key\"\n",
        )
        .unwrap();
        assert_eq!(
            req.compare,
            vec![Compare::new(
                "key1",
                CompareResult::Greater,
                CompareTarget::ModRevision(0)
            )]
        );
        assert_eq!(req.success.len(), 1);
        assert_eq!(req.failure.len(), 2);
        match &req.failure[1] {
            RequestOp::Put(p) => assert_eq!(p.value, b"some extra key"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(parse("mod(key1) > \"0\"\n").is_err());
        assert!(parse("size(\"k\") = \"1\"\n").is_err());
        assert!(parse("\nfrobnicate k\n").is_err());
        assert!(parse("\nput \"unterminated\n").is_err());
    }
}
