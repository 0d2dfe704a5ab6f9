//! Objects being written or committed: flush objects from before their PUT until their
//! commit, new segments from before their PUTs until the coordinator swaps them in. Until
//! the commit lands nothing references them, so the garbage collector must not take them
//! however long a PUT is retried or a commit waits.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct InFlightObjects {
    keys: Mutex<HashSet<String>>,
}

/// Keeps its keys in flight until dropped.
#[derive(Debug)]
pub struct InFlightGuard {
    registry: Arc<InFlightObjects>,
    keys: Vec<String>,
}

impl InFlightObjects {
    /// Marks `keys` in flight; call it before the first PUT of any of them.
    pub fn protect(self: &Arc<Self>, keys: Vec<String>) -> InFlightGuard {
        self.lock().extend(keys.iter().cloned());
        InFlightGuard {
            registry: Arc::clone(self),
            keys,
        }
    }

    /// The keys in flight now.
    pub fn keys(&self) -> HashSet<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // The set is consistent after every operation, so a poisoned lock is still usable.
        self.keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut keys = self.registry.lock();
        for key in &self.keys {
            keys.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_in_flight_until_their_guard_drops() {
        let registry = Arc::new(InFlightObjects::default());
        let first = registry.protect(vec!["a".into(), "b".into()]);
        let second = registry.protect(vec!["c".into()]);
        assert_eq!(registry.keys().len(), 3);
        drop(first);
        assert_eq!(registry.keys(), HashSet::from(["c".to_string()]));
        drop(second);
        assert!(registry.keys().is_empty());
    }
}
