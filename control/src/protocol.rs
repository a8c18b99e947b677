//! The control protocol spoken on a node's Unix socket: newline-delimited JSON.
//!
//! The client sends one [`Request`] per line; the node answers with zero or more
//! [`Reply::Out`]/[`Reply::Err`] lines and exactly one final [`Reply::Exit`]. A connection may
//! carry several requests one after another.
//!
//! ```text
//! -> {"argv":["ifconfig","-a"]}
//! <- {"out":"shmif0: flags=0x8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 1500"}
//! <- {"exit":0}
//! ```

use serde::{Deserialize, Serialize};

/// Longest request line a node accepts (bytes, newline excluded). Longer lines are answered with
/// an error and the connection is closed: a node must not buffer unbounded input.
pub const MAX_REQUEST_LINE: usize = 1 << 20;

/// One command to run inside the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The command and its arguments, e.g. `["ping", "-c", "1", "10.0.0.2"]`.
    pub argv: Vec<String>,
    /// Text the command reads as its standard input, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
}

/// One line of a command's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reply {
    /// A line of standard output, without its newline.
    Out(String),
    /// A line of error output, without its newline.
    Err(String),
    /// The command finished with this status; always the last line of an answer.
    Exit(i32),
}

impl Reply {
    /// The reply as one protocol line, newline included.
    pub fn to_line(&self) -> String {
        // Serialising a plain enum of strings and integers cannot fail.
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| r#"{"exit":70}"#.to_string());
        s.push('\n');
        s
    }
}

impl Request {
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_use_the_documented_shape() {
        assert_eq!(Reply::Out("a".into()).to_line(), "{\"out\":\"a\"}\n");
        assert_eq!(Reply::Err("b".into()).to_line(), "{\"err\":\"b\"}\n");
        assert_eq!(Reply::Exit(0).to_line(), "{\"exit\":0}\n");
    }

    #[test]
    fn request_stdin_is_optional() {
        let r: Request = serde_json::from_str(r#"{"argv":["ifconfig","-a"]}"#).unwrap();
        assert_eq!(r.argv, ["ifconfig", "-a"]);
        assert_eq!(r.stdin, None);
        assert_eq!(r.to_line(), "{\"argv\":[\"ifconfig\",\"-a\"]}\n");
        let r: Request =
            serde_json::from_str(r#"{"argv":["setkey","-c"],"stdin":"flush;"}"#).unwrap();
        assert_eq!(r.stdin.as_deref(), Some("flush;"));
    }
}
