//! Locks whose holder may have panicked: the data a std `Mutex` guards here
//! is always consistent between statements, so a poisoned lock is taken as
//! it is rather than spreading the panic.

use std::sync::{Mutex, MutexGuard};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
