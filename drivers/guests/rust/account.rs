//! account: a bank account that never goes below zero.
//!
//! - `Ext<Deposit>`, body an amount: adds it; replies with the balance.
//! - `Ext<Withdraw>`, body an amount: takes it away, or refuses an overdraft with 400
//!   (the balance stays as it was); replies with the balance.
//! - `Ext<Balance>`: replies with the balance.
//! - `Ext<History>`: replies with one line per change, oldest first (`+50`, `-20`).
//!
//! Its config, when set, is the opening balance. Amounts are whole units (`u64`); an
//! amount that is not a number is a 400, a balance that would overflow a 409.
#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use hyperverse_guest::{export, Failure, Particle, Reply, Wave};

struct Account {
    balance: u64,
    history: Vec<i128>,
}

fn amount(wave: &Wave<'_>) -> Result<u64, Failure> {
    let text = wave.text()?.trim();
    text.parse()
        .map_err(|_| Failure::bad_request(format!("{text:?} is not an amount (a whole number)")))
}

impl Particle for Account {
    fn init(config: &[u8]) -> Result<Self, Failure> {
        let opening = core::str::from_utf8(config)
            .map_err(|_| Failure::bad_request("the opening balance is not text"))?
            .trim();
        let balance = if opening.is_empty() {
            0
        } else {
            opening
                .parse()
                .map_err(|_| Failure::bad_request("the opening balance is not a number"))?
        };
        Ok(Account {
            balance,
            history: Vec::new(),
        })
    }

    fn handle(&mut self, wave: &Wave<'_>) -> Result<Reply, Failure> {
        match wave.ext() {
            Some("Deposit") => {
                let amount = amount(wave)?;
                self.balance = self
                    .balance
                    .checked_add(amount)
                    .ok_or_else(|| Failure::conflict("the balance would overflow"))?;
                self.history.push(i128::from(amount));
            }
            Some("Withdraw") => {
                let amount = amount(wave)?;
                if amount > self.balance {
                    return Err(Failure::bad_request(format!(
                        "overdraft refused: the balance is {}, {} was asked",
                        self.balance, amount
                    )));
                }
                self.balance -= amount;
                self.history.push(-i128::from(amount));
            }
            Some("Balance") => {}
            Some("History") => {
                let lines: Vec<String> = self.history.iter().map(|c| format!("{c:+}")).collect();
                return Ok(lines.join("\n").into());
            }
            _ => {
                return Err(Failure::bad_request(format!(
                    "account takes Ext<Deposit>, Ext<Withdraw>, Ext<Balance> and Ext<History>, not {}",
                    wave.method
                )))
            }
        }
        Ok(self.balance.to_string().into())
    }
}

export!(Account);
