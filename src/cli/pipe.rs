//! Standard output is a pipe: when its reader goes away (`loupe stats | head -1`), every command
//! stops quietly with status 141, the status a shell reports for a process ended by SIGPIPE.
//!
//! Why this way, and not the two usual ones:
//! - Restoring SIGPIPE's default action at start would also kill the process when a *network*
//!   peer closes a socket mid-write (sync and publish talk to S3 through hyper, which writes with
//!   plain `write(2)`); Rust ignores SIGPIPE precisely so those writes return an error instead.
//! - Routing every `println!` through a writer that returns the error means touching every
//!   command (over a hundred call sites, edited by several people at once), and each new
//!   `println!` would silently bring the panic back.
//!
//! So the rule lives in one place and covers all output, old and new: `println!` panics with
//! "failed printing to stdout: <io error>" when the write fails, and the panic hook installed
//! here recognises exactly that panic with a broken-pipe cause and exits with 141 before anything
//! is printed (no message, no backtrace). Output written through `std::io::Write` that returns
//! the error instead reaches [`is_broken_pipe`] in `cli::main`. Any other panic goes to the
//! default hook unchanged. Ending the process here is safe for the store: SQLite in WAL mode is
//! durable on commit and rolls an open transaction back on the next open, as after a crash.

use std::io;

/// The exit status of a command whose output reader closed the pipe (128 + SIGPIPE).
pub const BROKEN_PIPE_STATUS: u8 = 141;

/// Installs the panic hook that turns a failed `println!` on a closed pipe into a quiet exit.
pub fn install() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload_as_str().is_some_and(is_stdout_broken_pipe_panic) {
            std::process::exit(i32::from(BROKEN_PIPE_STATUS));
        }
        default_hook(info);
    }));
}

/// True for the message std's `print!` family panics with when the reader closed stdout.
fn is_stdout_broken_pipe_panic(message: &str) -> bool {
    let broken_pipe = io::Error::from(io::ErrorKind::BrokenPipe).to_string();
    message.starts_with("failed printing to stdout")
        && (message.contains(&broken_pipe)
            // The OS's own text: "Broken pipe (os error 32)" on Unix, "The pipe is being
            // closed. (os error 232)" on Windows.
            || message.contains("os error 32)")
            || message.contains("os error 232)"))
}

/// True when an error returned by a command is, at its root, a write to a closed pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                .is_some_and(|k| k == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_the_stdout_broken_pipe_panic() {
        assert!(is_stdout_broken_pipe_panic(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!is_stdout_broken_pipe_panic(
            "failed printing to stderr: Broken pipe (os error 32)"
        ));
        assert!(!is_stdout_broken_pipe_panic(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!is_stdout_broken_pipe_panic("index out of bounds"));
    }

    #[test]
    fn finds_a_broken_pipe_anywhere_in_an_error_chain() {
        let err = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe))
            .context("writing the report");
        assert!(is_broken_pipe(&err));
        let other = anyhow::Error::from(io::Error::from(io::ErrorKind::NotFound));
        assert!(!is_broken_pipe(&other));
    }
}
