//! Names made at run time that must live as long as the built-in ones: a custom resource's
//! group, kind and plural become `&'static str` facts like those compiled in, so one
//! [`crate::ResourceType`] serves both and lookups stay free of allocation.
//!
//! Invariant: each distinct string (and list of strings) is leaked once and reused after
//! that, so redefining a CustomResourceDefinition again and again costs no memory beyond
//! its first definition; only names never seen before grow the pool.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

fn strings() -> &'static Mutex<HashSet<&'static str>> {
    static POOL: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    POOL.get_or_init(Default::default)
}

fn lists() -> &'static Mutex<HashSet<&'static [&'static str]>> {
    static POOL: OnceLock<Mutex<HashSet<&'static [&'static str]>>> = OnceLock::new();
    POOL.get_or_init(Default::default)
}

/// The one `'static` copy of `s`.
pub fn str(s: &str) -> &'static str {
    let mut pool = strings().lock().expect("intern pool lock");
    if let Some(found) = pool.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    pool.insert(leaked);
    leaked
}

/// The one `'static` copy of a list of strings.
pub fn strs<S: AsRef<str>>(items: &[S]) -> &'static [&'static str] {
    let interned: Vec<&'static str> = items.iter().map(|s| str(s.as_ref())).collect();
    let mut pool = lists().lock().expect("intern pool lock");
    if let Some(found) = pool.get(interned.as_slice()) {
        return found;
    }
    let leaked: &'static [&'static str] = Box::leak(interned.into_boxed_slice());
    pool.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_is_one_allocation() {
        let a = str(&String::from("widgets"));
        let b = str("widgets");
        assert!(std::ptr::eq(a, b));
        let l1 = strs(&["wd".to_string(), "wdg".to_string()]);
        let l2 = strs(&["wd", "wdg"]);
        assert!(std::ptr::eq(l1, l2));
        assert_eq!(l1, ["wd", "wdg"]);
        assert!(strs::<&str>(&[]).is_empty());
    }
}
