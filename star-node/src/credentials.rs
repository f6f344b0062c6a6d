//! Where credentials come from when they are not in a config file: files, never the
//! command line, which every local user can read in the process list. star-node reads
//! its admin token from `admin_token_file` (see [`crate::config`]).
//!
//! A file holds the credential alone; surrounding whitespace (the newline an editor
//! adds) is trimmed. Errors name the variable or file, never its contents. What a token
//! means is the gate's business ([`crate::gate`]).

use std::path::Path;

/// Why a credential could not be read. The message never contains the credential.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CredentialError(String);

/// The credential kept in `path`, trimmed; `what` names it in errors.
pub fn read_file(what: &str, path: &Path) -> Result<String, CredentialError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CredentialError(format!("cannot read the {what} file {shown}: {e}")))?;
    let credential = text.trim();
    if credential.is_empty() {
        return Err(CredentialError(format!("the {what} file {shown} is empty")));
    }
    Ok(credential.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn a_file_is_read_trimmed() {
        let token = file("  localhost:alice#pw\n");
        let read = read_file("token", token.path()).unwrap();
        assert_eq!(read, "localhost:alice#pw");
    }

    #[test]
    fn an_empty_file_and_a_missing_one_are_refused() {
        let empty = file(" \n");
        let error = read_file("token", empty.path()).unwrap_err().to_string();
        assert!(error.contains("is empty"), "{error}");
        let missing = Path::new("/nonexistent/token");
        let error = read_file("token", missing).unwrap_err().to_string();
        assert!(
            error.contains("cannot read the token file /nonexistent/token"),
            "{error}"
        );
    }
}
