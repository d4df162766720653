//! nftables tables as data, and the `nft` transactions that move the kernel from one to the
//! next.
//!
//! A [`Table`] is what a program wants one table of its own to hold: chains with their
//! rules (each rule as `nft` syntax), sets and maps with their elements. [`Table::create`]
//! is the script that replaces the whole table at once (a full sync: `add`, `delete` and
//! the new definition in one transaction, so packets never see a half-built table);
//! [`Table::update`] is the script that changes only what differs from the table the kernel
//! was last given (a partial sync). Either runs with [`apply`], as one `nft -f -`
//! transaction: the kernel commits all of it or none of it.
//!
//! Invariants:
//! - The scripts of `update` are ordered so every reference resolves inside the
//!   transaction: sets and chains are added before the rules and elements that name them,
//!   and chains and sets are deleted only after the rules and elements that named them.
//! - A change `update` cannot express (a base chain's hook, a set's type) makes it fall back
//!   to `create`.
//! - The table is the caller's alone: nothing here reads or changes any other table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use crate::ip::{Netns, WiringError};

/// A chain hooked into the packet path (`type nat hook prerouting priority dstnat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// `filter` or `nat`.
    pub kind: &'static str,
    /// `prerouting`, `input`, `forward`, `output` or `postrouting`.
    pub hook: &'static str,
    /// A number or an nft keyword expression (`dstnat`, `srcnat`, `dstnat - 10`).
    pub priority: &'static str,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    pub hook: Option<Hook>,
    /// Rules in order, in nft syntax (`ip saddr 10.42.0.5 jump mark-for-masquerade`).
    pub rules: Vec<String>,
}

/// A set (`type ipv4_addr`) or a map (`type ipv4_addr . inet_proto . inet_service : verdict`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    /// Its declaration inside the braces, as nft takes it: `type …; flags …; timeout …`.
    pub declaration: String,
    /// Maps: `key` → `Some(value)`; sets: `key` → `None`.
    pub elements: BTreeMap<String, Option<String>>,
    /// A map (`add map`) rather than a set (`add set`).
    pub map: bool,
    /// The kernel fills it (`update @set { ip saddr }`); its elements are never managed.
    pub dynamic: bool,
}

/// One nftables table: chains, sets and maps by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// `ip`, `ip6` or `inet`.
    pub family: &'static str,
    pub name: String,
    pub comment: String,
    pub chains: BTreeMap<String, Chain>,
    pub sets: BTreeMap<String, Set>,
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error(transparent)]
    Wiring(#[from] WiringError),
    #[error("cannot run nft (apt-get install nftables): {0}")]
    Spawn(std::io::Error),
    #[error("writing the transaction to nft: {0}")]
    Input(std::io::Error),
    /// nft refused the transaction; nothing of it was committed.
    #[error("nft refused the transaction: {0}")]
    Refused(String),
}

impl Table {
    pub fn new(family: &'static str, name: &str, comment: &str) -> Table {
        Table {
            family,
            name: name.to_string(),
            comment: comment.to_string(),
            chains: BTreeMap::new(),
            sets: BTreeMap::new(),
        }
    }

    /// The chain `name`, added empty if it is not there.
    pub fn chain(&mut self, name: &str) -> &mut Chain {
        self.chains.entry(name.to_string()).or_default()
    }

    /// The set or map `name`, which must have been declared.
    pub fn set(&mut self, name: &str) -> &mut Set {
        self.sets
            .get_mut(name)
            .unwrap_or_else(|| panic!("the set {name} is not declared"))
    }

    fn header(&self) -> String {
        format!("{} {}", self.family, self.name)
    }

    /// The script that replaces whatever the kernel has under this table's name with this
    /// table, in one transaction.
    pub fn create(&self) -> String {
        let t = self.header();
        let mut s = String::with_capacity(self.estimated_size());
        // `add` first so `delete` cannot fail on a missing table.
        let _ = writeln!(s, "add table {t}\ndelete table {t}");
        let _ = writeln!(s, "add table {t} {{ comment \"{}\" ; }}", self.comment);
        for (name, set) in &self.sets {
            set.write_add(&mut s, &t, name);
        }
        for (name, chain) in &self.chains {
            chain.write_add(&mut s, &t, name);
        }
        for (name, chain) in &self.chains {
            for rule in &chain.rules {
                let _ = writeln!(s, "add rule {t} {name} {rule}");
            }
        }
        for (name, set) in &self.sets {
            write_elements(&mut s, "add", &t, name, set.elements.iter(), set.map);
        }
        s
    }

    /// The script that turns `old` (what the kernel was last given) into this table, or
    /// `None` if the change needs [`Table::create`]. An empty script means nothing changed.
    pub fn update(&self, old: &Table) -> Option<String> {
        if (self.family, &self.name) != (old.family, &old.name) {
            return None;
        }
        let t = self.header();
        for (name, set) in &self.sets {
            if let Some(was) = old.sets.get(name)
                && (was.declaration != set.declaration || was.map != set.map)
            {
                return None;
            }
        }
        for (name, chain) in &self.chains {
            if let Some(was) = old.chains.get(name)
                && was.hook != chain.hook
            {
                return None;
            }
        }
        let mut s = String::new();
        for (name, set) in &self.sets {
            if !old.sets.contains_key(name) {
                set.write_add(&mut s, &t, name);
            }
        }
        for (name, chain) in &self.chains {
            if !old.chains.contains_key(name) {
                chain.write_add(&mut s, &t, name);
            }
        }
        for (name, chain) in &self.chains {
            match old.chains.get(name) {
                Some(was) if was.rules == chain.rules => {}
                was => {
                    if was.is_some() {
                        let _ = writeln!(s, "flush chain {t} {name}");
                    }
                    for rule in &chain.rules {
                        let _ = writeln!(s, "add rule {t} {name} {rule}");
                    }
                }
            }
        }
        let empty = BTreeMap::new();
        for (name, set) in &self.sets {
            if set.dynamic {
                continue;
            }
            let before = old.sets.get(name).map_or(&empty, |s| &s.elements);
            // Gone or changed value: delete (a map element's value cannot be replaced).
            let gone = before
                .iter()
                .filter(|(k, v)| set.elements.get(*k) != Some(*v));
            write_elements(&mut s, "delete", &t, name, gone, set.map);
        }
        for (name, set) in &self.sets {
            if set.dynamic {
                continue;
            }
            let before = old.sets.get(name).map_or(&empty, |s| &s.elements);
            let new = set
                .elements
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(*v));
            write_elements(&mut s, "add", &t, name, new, set.map);
        }
        for name in old.chains.keys().filter(|n| !self.chains.contains_key(*n)) {
            let _ = writeln!(s, "flush chain {t} {name}");
        }
        for name in old.chains.keys().filter(|n| !self.chains.contains_key(*n)) {
            let _ = writeln!(s, "delete chain {t} {name}");
        }
        for name in old.sets.keys().filter(|n| !self.sets.contains_key(*n)) {
            let kind = if old.sets[name].map { "map" } else { "set" };
            let _ = writeln!(s, "delete {kind} {t} {name}");
        }
        Some(s)
    }

    fn estimated_size(&self) -> usize {
        let rules: usize = self
            .chains
            .iter()
            .map(|(n, c)| {
                c.rules
                    .iter()
                    .map(|r| r.len() + n.len() + 24)
                    .sum::<usize>()
                    + 48
            })
            .sum();
        let elements: usize = self.sets.values().map(|s| s.elements.len() * 96).sum();
        rules + elements + 1024
    }

    /// The script that removes this table from the kernel (nothing if it is not there).
    pub fn delete_script(family: &str, name: &str) -> String {
        format!("add table {family} {name}\ndelete table {family} {name}\n")
    }
}

impl Chain {
    fn write_add(&self, s: &mut String, table: &str, name: &str) {
        match &self.hook {
            Some(h) => {
                let _ = writeln!(
                    s,
                    "add chain {table} {name} {{ type {} hook {} priority {} ; }}",
                    h.kind, h.hook, h.priority
                );
            }
            None => {
                let _ = writeln!(s, "add chain {table} {name}");
            }
        }
    }
}

impl Set {
    /// A set of `type` (`ipv4_addr`).
    pub fn plain(declaration: &str) -> Set {
        Set {
            declaration: declaration.to_string(),
            ..Set::default()
        }
    }

    /// A map of `type` (`ipv4_addr . inet_proto . inet_service : verdict`).
    pub fn map(declaration: &str) -> Set {
        Set {
            map: true,
            ..Set::plain(declaration)
        }
    }

    /// A set the kernel fills from rules (`update @name { … }`), its entries timing out.
    pub fn dynamic(declaration: &str) -> Set {
        Set {
            dynamic: true,
            ..Set::plain(declaration)
        }
    }

    pub fn insert(&mut self, key: String) {
        self.elements.insert(key, None);
    }

    pub fn insert_mapping(&mut self, key: String, value: String) {
        self.elements.insert(key, Some(value));
    }

    fn write_add(&self, s: &mut String, table: &str, name: &str) {
        let kind = if self.map { "map" } else { "set" };
        let _ = writeln!(s, "add {kind} {table} {name} {{ {} ; }}", self.declaration);
    }
}

/// `add|delete element T NAME { k : v, … }`, in chunks so no line grows without bound.
fn write_elements<'a>(
    s: &mut String,
    verb: &str,
    table: &str,
    name: &str,
    elements: impl Iterator<Item = (&'a String, &'a Option<String>)>,
    map: bool,
) {
    const CHUNK: usize = 1000;
    let mut count = 0;
    for (key, value) in elements {
        if count % CHUNK == 0 {
            if count > 0 {
                s.push_str(" }\n");
            }
            let _ = write!(s, "{verb} element {table} {name} {{ ");
        } else {
            s.push_str(", ");
        }
        s.push_str(key);
        // Deleting a map element names only its key.
        if let (true, Some(value), "add") = (map, value, verb) {
            let _ = write!(s, " : {value}");
        }
        count += 1;
    }
    if count > 0 {
        s.push_str(" }\n");
    }
}

/// Runs `script` as one `nft -f -` transaction in `netns`.
pub fn apply(netns: &Netns, script: &str) -> Result<(), NftError> {
    let output = run_nft(netns, &["-f", "-"], Some(script))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    // nft repeats the offending line under each error; the first few lines say it.
    let first: Vec<&str> = stderr.lines().take(6).collect();
    Err(NftError::Refused(first.join("\n")))
}

/// `nft list table FAMILY NAME` in `netns`: the table as nft prints it, or `None` when there
/// is no such table.
pub fn list(netns: &Netns, family: &str, name: &str) -> Result<Option<String>, NftError> {
    let output = run_nft(netns, &["list", "table", family, name], None)?;
    if output.status.success() {
        return Ok(Some(String::from_utf8_lossy(&output.stdout).into_owned()));
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No such file or directory") {
        return Ok(None);
    }
    Err(NftError::Refused(stderr.trim().to_string()))
}

/// Whether the kernel holds the chain `chain` of table `family name` in `netns`: a cheap
/// check that a table is still there, whatever its size.
pub fn has_chain(netns: &Netns, family: &str, table: &str, chain: &str) -> Result<bool, NftError> {
    let output = run_nft(netns, &["list", "chain", family, table, chain], None)?;
    Ok(output.status.success())
}

/// `nft ARGS` in `netns`, given `input` on its standard input: what it printed and how it
/// ended.
fn run_nft(netns: &Netns, args: &[&str], input: Option<&str>) -> Result<Output, NftError> {
    netns.within(|| Ok(nft(args, input)))?
}

fn nft(args: &[&str], input: Option<&str>) -> Result<Output, NftError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    // nft reads all of its input before it answers, so writing cannot deadlock against its
    // output; the pipe closes when the handle goes, at the end of the match.
    let written = match (child.stdin.take(), input) {
        (Some(mut stdin), Some(text)) => stdin.write_all(text.as_bytes()),
        _ => Ok(()),
    };
    let output = child.wait_with_output().map_err(NftError::Spawn)?;
    match written {
        // A refused transaction says why on stderr; a lost write with nft content is ours.
        Err(e) if output.status.success() => Err(NftError::Input(e)),
        _ => Ok(output),
    }
}

/// The chains and sets the kernel holds for a table, by name, from `nft list table`
/// output: what a drift check compares with what was applied.
pub fn listed_names(listing: &str) -> BTreeSet<String> {
    listing
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match words.next()? {
                "chain" | "set" | "map" => words.next().map(str::to_string),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut t = Table::new("ip", "demo", "a test table");
        t.sets.insert(
            "targets".into(),
            Set::map("type ipv4_addr . inet_proto . inet_service : verdict"),
        );
        t.chain("nat-prerouting").hook = Some(Hook {
            kind: "nat",
            hook: "prerouting",
            priority: "dstnat",
        });
        t.chain("nat-prerouting")
            .rules
            .push("ip daddr . meta l4proto . th dport vmap @targets".into());
        t.chain("a").rules.push("dnat to 10.0.0.1:80".into());
        t.set("targets")
            .insert_mapping("10.43.0.5 . tcp . 80".into(), "goto a".into());
        t
    }

    #[test]
    fn create_replaces_the_whole_table_in_order() {
        let s = table().create();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines,
            [
                "add table ip demo",
                "delete table ip demo",
                "add table ip demo { comment \"a test table\" ; }",
                "add map ip demo targets { type ipv4_addr . inet_proto . inet_service : verdict ; }",
                "add chain ip demo a",
                "add chain ip demo nat-prerouting { type nat hook prerouting priority dstnat ; }",
                "add rule ip demo a dnat to 10.0.0.1:80",
                "add rule ip demo nat-prerouting ip daddr . meta l4proto . th dport vmap @targets",
                "add element ip demo targets { 10.43.0.5 . tcp . 80 : goto a }",
            ]
        );
    }

    #[test]
    fn an_unchanged_table_needs_no_statement() {
        assert_eq!(table().update(&table()).as_deref(), Some(""));
    }

    #[test]
    fn update_adds_before_it_uses_and_deletes_after_it_stops_using() {
        let old = table();
        let mut new = table();
        new.chains.remove("a");
        new.chain("b").rules.push("dnat to 10.0.0.2:80".into());
        new.set("targets")
            .insert_mapping("10.43.0.5 . tcp . 80".into(), "goto b".into());
        let s = new.update(&old).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines,
            [
                "add chain ip demo b",
                "add rule ip demo b dnat to 10.0.0.2:80",
                "delete element ip demo targets { 10.43.0.5 . tcp . 80 }",
                "add element ip demo targets { 10.43.0.5 . tcp . 80 : goto b }",
                "flush chain ip demo a",
                "delete chain ip demo a",
            ]
        );
    }

    #[test]
    fn changed_rules_flush_their_chain_and_dynamic_sets_are_left_to_the_kernel() {
        let old = table();
        let mut new = table();
        new.chain("a").rules = vec!["dnat to 10.0.0.9:80".into()];
        new.sets.insert(
            "seen".into(),
            Set::dynamic("type ipv4_addr; flags dynamic,timeout; timeout 3h"),
        );
        let s = new.update(&old).unwrap();
        assert_eq!(
            s.lines().collect::<Vec<_>>(),
            [
                "add set ip demo seen { type ipv4_addr; flags dynamic,timeout; timeout 3h ; }",
                "flush chain ip demo a",
                "add rule ip demo a dnat to 10.0.0.9:80",
            ]
        );
    }

    #[test]
    fn a_changed_hook_or_set_type_needs_a_full_create() {
        let mut hooked = table();
        hooked
            .chain("nat-prerouting")
            .hook
            .as_mut()
            .unwrap()
            .priority = "srcnat";
        assert_eq!(hooked.update(&table()), None);
        let mut retyped = table();
        retyped.set("targets").declaration = "type ipv4_addr : verdict".into();
        assert_eq!(retyped.update(&table()), None);
    }

    #[test]
    fn many_elements_are_written_in_bounded_lines() {
        let mut t = table();
        for i in 0..2500u32 {
            t.set("targets").insert_mapping(
                format!("10.43.{}.{} . tcp . 80", i / 256, i % 256),
                "goto a".into(),
            );
        }
        let s = t.create();
        let element_lines = s.lines().filter(|l| l.starts_with("add element")).count();
        assert_eq!(element_lines, 3);
        assert!(s.lines().all(|l| l.len() < 64 * 1024));
    }

    #[test]
    fn listed_names_reads_chains_and_sets() {
        let listing = "table ip demo {\n\tmap targets {\n\t\ttype ipv4_addr : verdict\n\t}\n\n\tchain a {\n\t\tdnat to 10.0.0.1:80\n\t}\n}\n";
        let names: Vec<String> = listed_names(listing).into_iter().collect();
        assert_eq!(names, ["a", "targets"]);
    }
}
