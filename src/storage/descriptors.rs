//! The shard's budget of open segment files: an LRU over every segment file
//! the shard's logs hold. A file that has not been touched for a while gives
//! its descriptor back when another one needs to open, and opens again on
//! its next read or write. A file with an operation in flight is never
//! closed under it, so the budget can be overrun only by files all busy at
//! once.
//!
//! The LRU is per thread, and so per shard: every shard owns its files.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};

/// Open segment files a shard keeps when nothing sets its budget (tests,
/// benchmarks); the broker sets it from the open-file limit at start-up.
pub const OPEN_SEGMENT_FILES_DEFAULT: usize = 4096;
/// The smallest budget: enough for the active segments of the partitions
/// being opened at once and a few readers.
pub const OPEN_SEGMENT_FILES_MIN: usize = 32;

/// What an LRU entry can close: the handle slot shared with its file.
pub(super) trait Closable {
    /// Drops the open descriptor if no operation holds it; true if it did.
    fn close_if_idle(&self) -> bool;
}

struct Entry {
    last_use: u64,
    file: Weak<dyn Closable>,
}

#[derive(Default)]
struct Lru {
    budget: usize,
    clock: u64,
    entries: HashMap<u64, Entry>,
    by_age: BTreeMap<u64, u64>,
    next_id: u64,
    reopens: u64,
    closes: u64,
}

thread_local! {
    static LRU: RefCell<Lru> = RefCell::new(Lru {
        budget: OPEN_SEGMENT_FILES_DEFAULT,
        ..Lru::default()
    });
}

/// Sets this shard's budget of open segment files.
pub fn set_budget(files: usize) {
    LRU.with(|lru| lru.borrow_mut().budget = files.max(OPEN_SEGMENT_FILES_MIN));
}

/// This shard's open segment files and budget, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorStats {
    pub open: usize,
    pub budget: usize,
    /// Files opened again after the LRU had closed them.
    pub reopens: u64,
    /// Files the LRU closed to make room.
    pub closes: u64,
}

pub fn stats() -> DescriptorStats {
    LRU.with(|lru| {
        let lru = lru.borrow();
        DescriptorStats {
            open: lru.entries.len(),
            budget: lru.budget,
            reopens: lru.reopens,
            closes: lru.closes,
        }
    })
}

/// A file's place in the LRU while its descriptor is open.
#[derive(Debug, Default)]
pub(super) struct Ticket(Cell<Option<u64>>);

impl Ticket {
    /// Makes room for one more open file (closing the least recently used
    /// idle ones), before the caller opens it.
    pub(super) fn make_room() {
        LRU.with(|lru| lru.borrow_mut().make_room(1));
    }

    /// Records that `file` holds an open descriptor now; `reopened` when the
    /// LRU had closed it before.
    pub(super) fn opened(&self, file: Weak<dyn Closable>, reopened: bool) {
        LRU.with(|lru| {
            let mut lru = lru.borrow_mut();
            if reopened {
                lru.reopens += 1;
            }
            let id = lru.next_id;
            lru.next_id += 1;
            let last_use = lru.tick();
            lru.entries.insert(id, Entry { last_use, file });
            lru.by_age.insert(last_use, id);
            if let Some(old) = self.0.replace(Some(id)) {
                lru.forget(old);
            }
        });
    }

    /// Marks the file as just used.
    pub(super) fn touch(&self) {
        let Some(id) = self.0.get() else { return };
        LRU.with(|lru| {
            let lru = &mut *lru.borrow_mut();
            let now = lru.tick();
            if let Some(entry) = lru.entries.get_mut(&id) {
                let before = std::mem::replace(&mut entry.last_use, now);
                lru.by_age.remove(&before);
                lru.by_age.insert(now, id);
            }
        });
    }

    /// Takes the file out of the LRU (it closed, or is dropped).
    pub(super) fn closed(&self) {
        if let Some(id) = self.0.take() {
            // Inside `make_room` the entry is already gone.
            let _ = LRU.try_with(|lru| {
                if let Ok(mut lru) = lru.try_borrow_mut() {
                    lru.forget(id);
                }
            });
        }
    }

    /// Forgets the LRU place without calling into the LRU (for `close_if_idle`,
    /// which the LRU calls).
    pub(super) fn detach(&self) {
        self.0.set(None);
    }

    /// Whether the LRU still counts this file as open.
    pub(super) fn is_open(&self) -> bool {
        self.0.get().is_some()
    }
}

impl Lru {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn forget(&mut self, id: u64) {
        if let Some(entry) = self.entries.remove(&id) {
            self.by_age.remove(&entry.last_use);
        }
    }

    /// Closes idle files, oldest first, until `more` fit in the budget; busy
    /// ones are passed over (and count as used now).
    fn make_room(&mut self, more: usize) {
        let mut passes = self.entries.len();
        while self.entries.len() + more > self.budget && passes > 0 {
            passes -= 1;
            let Some((&age, &id)) = self.by_age.iter().next() else {
                return;
            };
            self.by_age.remove(&age);
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            let file = entry.file.upgrade();
            // The file's own `closed` call would re-enter the LRU; remove first.
            self.entries.remove(&id);
            match file {
                Some(file) if !file.close_if_idle() => {
                    let now = self.tick();
                    self.entries.insert(
                        id,
                        Entry {
                            last_use: now,
                            file: Rc::downgrade(&file),
                        },
                    );
                    self.by_age.insert(now, id);
                }
                Some(_) => self.closes += 1,
                None => {}
            }
        }
    }
}
