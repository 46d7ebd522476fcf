//! A cached answer of the query thread: asked once per (data generation, key), kept (and shown,
//! while a fresher one is on its way) until the key changes.

use super::{Asker, Query};

/// One cached answer; errors are messages for people.
pub struct Cached<K, V> {
    /// The last question asked: its generation and key.
    asked: Option<(u64, K)>,
    /// The answer to the last key asked, with the generation it was asked at.
    value: Option<(u64, K, Result<V, String>)>,
}

impl<K, V> Default for Cached<K, V> {
    fn default() -> Self {
        Self {
            asked: None,
            value: None,
        }
    }
}

impl<K: PartialEq + Clone, V> Cached<K, V> {
    /// Asks `query` unless this key was already asked at the current generation.
    pub fn ensure(&mut self, asker: &mut Asker<'_>, key: &K, query: impl FnOnce() -> Query) {
        let fresh = matches!(&self.asked, Some((g, k)) if *g == asker.generation && k == key);
        if !fresh {
            asker.ask(query());
            self.asked = Some((asker.generation, key.clone()));
        }
    }

    /// Reads the answer right here unless this key was already read at `generation`: for point
    /// reads by primary key (one box's history, one image's tags), which take microseconds
    /// and would only flicker if they went through the query thread.
    pub fn ensure_now(
        &mut self,
        generation: u64,
        key: &K,
        read: impl FnOnce() -> Result<V, String>,
    ) {
        let fresh = matches!(&self.asked, Some((g, k)) if *g == generation && k == key);
        if !fresh {
            self.asked = Some((generation, key.clone()));
            self.value = Some((generation, key.clone(), read()));
        }
    }

    /// Takes an answer; answers for a key no longer wanted are dropped.
    pub fn fill(&mut self, generation: u64, key: K, value: Result<V, String>) {
        if matches!(&self.asked, Some((_, k)) if *k == key) {
            let newer = self
                .value
                .as_ref()
                .is_some_and(|(g, k, _)| *k == key && *g > generation);
            if !newer {
                self.value = Some((generation, key, value));
            }
        }
    }

    /// The answer for the key asked last (possibly from an older generation).
    pub fn value(&self) -> Option<&Result<V, String>> {
        let (_, asked) = self.asked.as_ref()?;
        self.value
            .as_ref()
            .filter(|(_, k, _)| k == asked)
            .map(|(_, _, v)| v)
    }

    /// True while the answer to the last question has not arrived.
    pub fn loading(&self) -> bool {
        match (&self.asked, &self.value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some((ga, ka)), Some((gv, kv, _))) => ka != kv || gv < ga,
        }
    }

    /// Forgets the key, so nothing is asked until `ensure` is called again.
    pub fn clear(&mut self) {
        self.asked = None;
        self.value = None;
    }
}
