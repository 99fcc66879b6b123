//! Locks that are safe to take in both thread and interrupt context.
//!
//! The kernel runs on one CPU. A plain spin lock taken by thread code and then by an interrupt
//! handler on the same CPU deadlocks, so [`IrqLock`] masks IRQs for as long as it is held.

use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};

use crate::irq::{IrqState, local_restore, local_save};

/// A spin lock that masks interrupts on the local CPU while held.
pub struct IrqLock<T> {
    inner: spin::Mutex<T>,
}

impl<T> IrqLock<T> {
    /// A new unlocked lock.
    pub const fn new(value: T) -> Self {
        Self {
            inner: spin::Mutex::new(value),
        }
    }

    /// Masks IRQs and takes the lock; both are undone when the guard drops.
    pub fn lock(&self) -> IrqLockGuard<'_, T> {
        let saved = local_save();
        IrqLockGuard {
            guard: ManuallyDrop::new(self.inner.lock()),
            saved,
        }
    }

    /// Takes the lock only if it is free (for diagnostics paths such as a panic handler).
    pub fn try_lock(&self) -> Option<IrqLockGuard<'_, T>> {
        let saved = local_save();
        match self.inner.try_lock() {
            Some(g) => Some(IrqLockGuard {
                guard: ManuallyDrop::new(g),
                saved,
            }),
            None => {
                local_restore(saved);
                None
            }
        }
    }
}

impl<T: Default> Default for IrqLock<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

/// Guard of an [`IrqLock`].
pub struct IrqLockGuard<'a, T> {
    guard: ManuallyDrop<spin::MutexGuard<'a, T>>,
    saved: IrqState,
}

impl<T> Deref for IrqLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for IrqLockGuard<'_, T> {
    fn drop(&mut self) {
        // Release the lock before unmasking, so a pending IRQ that wants it can take it.
        #[allow(unsafe_code)]
        // SAFETY: `guard` is dropped exactly once, here, and never used afterwards.
        unsafe {
            ManuallyDrop::drop(&mut self.guard)
        };
        local_restore(self.saved);
    }
}
