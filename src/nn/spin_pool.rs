//! A parallel-for for decoder steps: helper threads that spin between calls instead of
//! sleeping, and a caller that works alongside them.
//!
//! A full-size decoder step is about 180 small products (one activation row against 2-16 MB
//! of packed weights, 60-550 µs each at memory speed). Through Rayon each product woke
//! sleeping workers and put the calling thread to sleep until they were done; on a 2-vCPU VM
//! that hand-off cost about as much as the product. `voxtrace bench qmatmul --kind q4_0
//! --n-out 1024 --rotate 600` (one row, 600 different weights, so they come from memory)
//! measures both dispatchers in the same run; `VOXTRACE_SPIN_POOL=0` turns this one off.
//!
//! Here the calling thread publishes the job, takes indices itself, and waits (spinning) only
//! for indices a helper already claimed. Helpers spin for [`SPIN`] after their last job, then
//! park on a condition variable, so a phase without steps (the batched encoder on Rayon)
//! does not pay for them. One job runs at a time: a second caller (another thread, or a job
//! calling back in) gets Rayon instead.
//!
//! Mirrors the thread pools of ggml (`ggml_graph_compute_thread` with its spinning barrier)
//! and of other CPU decoders; no upstream PyTorch module.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a helper spins after its last job before it parks.
pub const SPIN: Duration = Duration::from_millis(2);

/// 0 = not read yet, 1 = on, 2 = off.
static ENABLED: AtomicU8 = AtomicU8::new(0);

/// Whether [`for_each_index`] uses the spinning helpers (else Rayon): on unless the
/// environment sets `VOXTRACE_SPIN_POOL=0` (read once), or [`set_enabled`] said otherwise.
pub fn enabled() -> bool {
    match ENABLED.load(Relaxed) {
        0 => {
            let on = std::env::var("VOXTRACE_SPIN_POOL").map_or(true, |v| v != "0");
            ENABLED.store(if on { 1 } else { 2 }, Relaxed);
            on
        }
        v => v == 1,
    }
}

/// Turn the spinning helpers on or off for the rest of the process (benchmarks compare the
/// two dispatchers in one run); the results are the same either way.
pub fn set_enabled(on: bool) {
    ENABLED.store(if on { 1 } else { 2 }, Relaxed);
}

/// One call of [`for_each_index`], on the caller's stack for the whole call.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    n: usize,
    /// Next unclaimed index.
    next: AtomicUsize,
    /// Indices finished (by anyone).
    done: AtomicUsize,
    /// The first panic of an `f(i)`, re-raised on the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Job<'_> {
    /// Claim and run indices until none is left. A panic is caught and kept (the index still
    /// counts as done, so nobody waits for it forever).
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Relaxed);
            if i >= self.n {
                return;
            }
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| (self.f)(i))) {
                let mut first = self.panic.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert(p);
            }
            self.done.fetch_add(1, Release);
        }
    }
}

struct Shared {
    /// The current job, null between jobs.
    slot: AtomicPtr<Job<'static>>,
    /// Bumped once per job, after `slot` is set.
    generation: AtomicU64,
    /// Helpers that may be reading `slot`'s job.
    active: AtomicUsize,
    /// Helpers parked (or about to park) on `cv`.
    sleepers: AtomicUsize,
    /// A caller owns the pool.
    busy: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

struct Pool {
    shared: &'static Shared,
    helpers: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            slot: AtomicPtr::new(std::ptr::null_mut()),
            generation: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }));
        let wanted = rayon::current_num_threads().saturating_sub(1);
        let mut helpers = 0;
        for k in 0..wanted {
            let spawned = std::thread::Builder::new()
                .name(format!("voxtrace-spin-{k}"))
                .spawn(move || helper(shared));
            // Fewer helpers (even none: the caller then runs every index) rather than a failure.
            if spawned.is_ok() {
                helpers += 1;
            }
        }
        Pool { shared, helpers }
    })
}

fn helper(s: &'static Shared) {
    let mut seen = s.generation.load(Acquire);
    let mut idle_since = Instant::now();
    let mut spins: u32 = 0;
    loop {
        let g = s.generation.load(Acquire);
        if g == seen {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) && idle_since.elapsed() > SPIN {
                let mut guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_add(1, SeqCst);
                while s.generation.load(SeqCst) == seen {
                    guard = s.cv.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                s.sleepers.fetch_sub(1, SeqCst);
                idle_since = Instant::now();
            }
            continue;
        }
        seen = g;
        s.active.fetch_add(1, SeqCst);
        let p = s.slot.load(SeqCst);
        if !p.is_null() {
            // SAFETY: `p` was published by a caller that clears `slot` and then waits for
            // `active == 0` before its job leaves the stack; this helper counted itself in
            // `active` before loading `p` (both SeqCst), so the job outlives this use.
            unsafe { &*p }.work();
        }
        s.active.fetch_sub(1, SeqCst);
        idle_since = Instant::now();
        spins = 0;
    }
}

/// Run `f(i)` for every `i < n`, each exactly once, on the calling thread and the spinning
/// helpers (Rayon's thread count less one, started on first use); returns when all are done.
/// Indices are claimed one at a time in increasing order, so give `n` a few times the thread
/// count for balance. When another call is running (another thread, or `f` itself calling
/// in), or when [`enabled`] is false, this one runs on Rayon instead.
///
/// # Panics
/// When some `f(i)` panics: with the first such panic, after every index has run.
pub fn for_each_index(n: usize, f: &(dyn Fn(usize) + Sync)) {
    if n == 0 {
        return;
    }
    if !enabled() {
        use rayon::prelude::*;
        (0..n).into_par_iter().for_each(f);
        return;
    }
    let p = pool();
    if n == 1 || p.helpers == 0 {
        (0..n).for_each(f);
        return;
    }
    let s = p.shared;
    if s.busy
        .compare_exchange(false, true, Acquire, Relaxed)
        .is_err()
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().for_each(f);
        return;
    }
    let job = Job {
        f,
        n,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        panic: Mutex::new(None),
    };
    // `slot` holds the job only until the waits below, which end before it leaves the stack
    // (no `f(i)` unwinds through here: `work` catches every panic).
    let ptr = (&job as *const Job<'_>).cast::<Job<'static>>().cast_mut();
    s.slot.store(ptr, SeqCst);
    s.generation.fetch_add(1, SeqCst);
    if s.sleepers.load(SeqCst) > 0 {
        let _guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
        s.cv.notify_all();
    }
    job.work();
    // Every index is claimed now; wait for those still running on a helper.
    while job.done.load(Acquire) < n {
        std::hint::spin_loop();
    }
    s.slot.store(std::ptr::null_mut(), SeqCst);
    while s.active.load(SeqCst) != 0 {
        std::hint::spin_loop();
    }
    s.busy.store(false, Release);
    let first = job.panic.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = first {
        resume_unwind(p);
    }
}

#[cfg(test)]
mod tests {
    use super::for_each_index;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    /// Every index runs exactly once, over many calls (helpers spinning and, after a pause,
    /// parked), and a call from inside a job (which falls back to Rayon) also completes.
    #[test]
    fn every_index_runs_once() {
        for round in 0..200 {
            let n = 1 + round % 37;
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            for_each_index(n, &|i| {
                hits[i].fetch_add(1, Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Relaxed) == 1), "round {round}");
            if round == 100 {
                std::thread::sleep(super::SPIN * 3);
            }
        }
        let total = AtomicUsize::new(0);
        for_each_index(4, &|_| {
            for_each_index(5, &|_| {
                total.fetch_add(1, Relaxed);
            });
        });
        assert_eq!(total.load(Relaxed), 20);
    }

    /// Calls from several threads at once each see all their indices.
    #[test]
    fn concurrent_callers() {
        std::thread::scope(|sc| {
            for t in 0..4 {
                sc.spawn(move || {
                    for _ in 0..100 {
                        let sum = AtomicUsize::new(0);
                        for_each_index(16 + t, &|i| {
                            sum.fetch_add(i, Relaxed);
                        });
                        let n = 16 + t;
                        assert_eq!(sum.load(Relaxed), n * (n - 1) / 2);
                    }
                });
            }
        });
    }

    /// A panicking index is reported to the caller, and the pool works afterwards.
    #[test]
    fn a_panic_reaches_the_caller() {
        let r = std::panic::catch_unwind(|| {
            for_each_index(64, &|i| {
                if i == 40 {
                    panic!("index 40");
                }
            });
        });
        assert!(r.is_err());
        let count = AtomicUsize::new(0);
        for_each_index(10, &|_| {
            count.fetch_add(1, Relaxed);
        });
        assert_eq!(count.load(Relaxed), 10);
    }
}
