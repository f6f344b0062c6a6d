//! Where credentials come from when they are not in a config file: the environment and
//! files, never the command line, which every local user can read in the process list.
//!
//! | who | what | from |
//! |---|---|---|
//! | `hv`, `loadtest run` | the login token | `HV_TOKEN`, or `--token-file FILE` (`HV_TOKEN_FILE`) — not both |
//! | star-node | the admin token | `admin_token_file` (see [`crate::config`]) |
//! | `loadtest run` | the shared secret, for registry-svc | `HV_LOADTEST_SECRET`, or `--secret-file FILE` |
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

/// A credential given either by environment variable `var` (its value `from_env`;
/// empty counts as unset) or by the file `--{flag} FILE`, not both; `None` when neither.
pub fn from_env_or_file(
    what: &str,
    var: &str,
    from_env: Option<String>,
    flag: &str,
    file: Option<&Path>,
) -> Result<Option<String>, CredentialError> {
    let from_env = from_env.filter(|value| !value.trim().is_empty());
    match (from_env, file) {
        (Some(_), Some(_)) => Err(CredentialError(format!(
            "the {what} is given twice: set {var} or --{flag}, not both"
        ))),
        (Some(value), None) => Ok(Some(value.trim().to_string())),
        (None, Some(path)) => read_file(what, path).map(Some),
        (None, None) => Ok(None),
    }
}

/// A client's login token: `HV_TOKEN`, or the file of `--token-file` (`file`); `None`
/// (anonymous) when neither is set.
pub fn client_token(file: Option<&Path>) -> Result<Option<String>, CredentialError> {
    let from_env = std::env::var("HV_TOKEN").ok();
    from_env_or_file("token", "HV_TOKEN", from_env, "token-file", file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    fn read(env: Option<&str>, file: Option<&Path>) -> Result<Option<String>, CredentialError> {
        from_env_or_file(
            "token",
            "HV_TOKEN",
            env.map(String::from),
            "token-file",
            file,
        )
    }

    #[test]
    fn a_file_is_read_trimmed() {
        let token = file("  localhost:alice#pw\n");
        let read = read(None, Some(token.path())).unwrap();
        assert_eq!(read.as_deref(), Some("localhost:alice#pw"));
    }

    #[test]
    fn the_variable_is_used_when_no_file_is_given() {
        assert_eq!(read(Some("t0ken"), None).unwrap().as_deref(), Some("t0ken"));
        assert_eq!(read(Some(""), None).unwrap(), None, "empty is unset");
        assert_eq!(read(None, None).unwrap(), None);
    }

    #[test]
    fn both_an_empty_file_and_a_missing_one_are_refused_without_the_token() {
        let token = file("t0ken");
        let twice = read(Some("t0ken"), Some(token.path())).unwrap_err();
        assert!(twice.to_string().contains("not both"), "{twice}");
        assert!(!twice.to_string().contains("t0ken"), "{twice}");
        let empty = file(" \n");
        let error = read(None, Some(empty.path())).unwrap_err().to_string();
        assert!(error.contains("is empty"), "{error}");
        let missing = Path::new("/nonexistent/token");
        let error = read(None, Some(missing)).unwrap_err().to_string();
        assert!(
            error.contains("cannot read the token file /nonexistent/token"),
            "{error}"
        );
    }
}
