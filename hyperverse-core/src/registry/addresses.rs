//! [`Addresses`]: the registry-svc instances a [`RegistryClient`](super::client) knows,
//! the order it dials them in, and the one error it reports when none answers.
//!
//! registry-svc keeps no state of its own (it all lives in Redis), so any instance
//! serves any call. The first connection tries the list in order; a lost connection is
//! redialled starting with the address after the one it was to, round robin, so that
//! the client moves off a dead instance at once and the clients of one dead instance
//! spread over the others rather than all piling onto the first.
//!
//! This module owns the list and the order only: no sockets, no timing.

use crate::error::{Error, Result};

/// A non-empty list of `host:port` addresses, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses(Vec<String>);

impl Addresses {
    /// The addresses, trimmed; `BadRequest` when there are none (or only blanks).
    pub fn new<A: ToString>(addresses: impl IntoIterator<Item = A>) -> Result<Self> {
        let list: Vec<String> = addresses
            .into_iter()
            .map(|a| a.to_string().trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if list.is_empty() {
            return Err(Error::bad_request(
                "no registry-svc address given: name at least one host:port",
            ));
        }
        Ok(Self(list))
    }

    /// Every address, in the order given.
    pub fn all(&self) -> &[String] {
        &self.0
    }

    /// The address at `index` (an index this list gave out).
    pub fn get(&self, index: usize) -> &str {
        &self.0[index % self.0.len()]
    }

    /// The order of a first connection: every index once, as listed.
    pub fn in_order(&self) -> impl Iterator<Item = usize> + use<> {
        0..self.0.len()
    }

    /// The order after losing the connection to `current`: every index once, starting
    /// with the next one and ending with `current` itself.
    pub fn after(&self, current: usize) -> impl Iterator<Item = usize> + use<> {
        let len = self.0.len();
        (1..=len).map(move |step| (current + step) % len)
    }

    /// The error of a round in which every address failed, each failure with the index
    /// it was for. One address: its error as it is. Several: one error naming each
    /// failure, of the kind a caller should act on — `Unavailable` if any of them may
    /// pass by retrying (`Timeout` if all timed out), else the first one's kind (a
    /// wrong secret is `Forbidden` wherever it is).
    pub fn none_answered(&self, mut failures: Vec<(usize, Error)>) -> Error {
        if failures.len() == 1 {
            return failures.remove(0).1;
        }
        let Some((_, first)) = failures.first() else {
            return Error::internal("no registry-svc address was tried");
        };
        let message = format!(
            "none of the {} registry-svc addresses answered: {}",
            failures.len(),
            failures
                .iter()
                .map(|(_, e)| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        );
        if failures.iter().all(|(_, e)| matches!(e, Error::Timeout(_))) {
            Error::Timeout(message)
        } else if failures.iter().any(|(_, e)| e.is_retryable()) {
            Error::Unavailable(message)
        } else {
            same_kind(first, message)
        }
    }
}

/// An error of the same kind as `like`, saying `message`.
fn same_kind(like: &Error, message: String) -> Error {
    match like {
        Error::BadRequest(_) => Error::BadRequest(message),
        Error::TooLarge { size, limit, .. } => Error::TooLarge {
            what: message,
            size: *size,
            limit: *limit,
        },
        Error::NotFound(_) => Error::NotFound(message),
        Error::AlreadyExists(_) => Error::AlreadyExists(message),
        Error::Forbidden(_) => Error::Forbidden(message),
        Error::Unavailable(_) => Error::Unavailable(message),
        Error::Timeout(_) => Error::Timeout(message),
        Error::Internal(_) => Error::Internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Addresses {
        Addresses::new(["a:1", " b:2 ", "c:3"]).unwrap()
    }

    #[test]
    fn the_list_is_trimmed_and_may_not_be_empty() {
        assert_eq!(three().all(), ["a:1", "b:2", "c:3"]);
        let none = Addresses::new(Vec::<String>::new()).unwrap_err();
        assert!(matches!(none, Error::BadRequest(_)), "{none}");
        assert!(Addresses::new([" ", ""]).is_err(), "blanks are no address");
    }

    #[test]
    fn a_first_connection_tries_them_as_listed() {
        assert_eq!(three().in_order().collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn a_lost_connection_starts_with_the_next_address_and_comes_round() {
        let addresses = three();
        assert_eq!(addresses.after(0).collect::<Vec<_>>(), [1, 2, 0]);
        assert_eq!(addresses.after(1).collect::<Vec<_>>(), [2, 0, 1]);
        assert_eq!(addresses.after(2).collect::<Vec<_>>(), [0, 1, 2]);
        let one = Addresses::new(["only:1"]).unwrap();
        assert_eq!(one.after(0).collect::<Vec<_>>(), [0], "one address: itself");
    }

    #[test]
    fn one_failure_is_reported_as_it_is() {
        let refused = Error::forbidden("registry a:1 refused the connection: wrong secret");
        let one = Addresses::new(["a:1"]).unwrap();
        assert_eq!(one.none_answered(vec![(0, refused.clone())]), refused);
    }

    #[test]
    fn several_failures_are_named_in_one_error_of_the_kind_to_act_on() {
        let addresses = three();
        let down = |a: &str| Error::Unavailable(format!("connecting to registry {a}: refused"));
        let slow = |a: &str| Error::Timeout(format!("connecting to registry {a}: no handshake"));
        let wrong = |a: &str| Error::forbidden(format!("registry {a} refused: wrong secret"));

        let mixed = addresses.none_answered(vec![(1, wrong("b:2")), (2, down("c:3"))]);
        assert!(matches!(mixed, Error::Unavailable(_)), "may pass: {mixed}");
        let text = mixed.to_string();
        assert!(
            text.contains("b:2") && text.contains("c:3") && text.contains("wrong secret"),
            "names every failure: {text}"
        );
        let timeouts = addresses.none_answered(vec![(0, slow("a:1")), (1, slow("b:2"))]);
        assert!(matches!(timeouts, Error::Timeout(_)), "{timeouts}");
        let refusals = addresses.none_answered(vec![(0, wrong("a:1")), (1, wrong("b:2"))]);
        assert!(matches!(refusals, Error::Forbidden(_)), "final: {refusals}");
    }
}
