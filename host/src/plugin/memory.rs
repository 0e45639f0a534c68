//! Plugins' linear memories, mapped so that forking pilot-host (to spawn a child) does not copy them.
//!
//! fork copies the page tables of every private mapping the parent touched and marks those pages
//! copy-on-write: with plugins holding tens of MiB each (a memory bomb up to its cap, a 48 MB answer),
//! every spawn of a supervised process slowed by milliseconds. Marking each linear memory
//! `MADV_DONTFORK` leaves it out of the child, which only runs `exec` anyway. Measured with the hostile
//! scenario (`cargo xtask bench`, h): see the README's plugin table.
//!
//! The cost: wasmtime's copy-on-write memory images do not apply to host-provided memories, so a fresh
//! instance copies its data segments (a few KiB for a Rust plugin).

use std::ptr::NonNull;

use wasmtime::{LinearMemory, MemoryCreator, MemoryType};

/// Creates linear memories that a fork leaves out.
pub struct NoForkMemory;

/// One linear memory: a reservation of `capacity` bytes plus its guard, of which `size` are readable
/// and writable.
struct Mapping {
    base: NonNull<u8>,
    total: usize,
    capacity: usize,
    size: usize,
}

// SAFETY: the mapping is owned by this value; wasmtime serializes access to a memory through its Store.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only reads the bookkeeping fields.
unsafe impl Sync for Mapping {}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(4096)
}

fn round_up(bytes: usize) -> usize {
    let page = page_size();
    bytes.div_ceil(page) * page
}

impl Mapping {
    fn new(capacity: usize, guard: usize, minimum: usize) -> std::io::Result<Mapping> {
        let capacity = round_up(capacity);
        let total = capacity + round_up(guard);
        // SAFETY: a fresh anonymous, inaccessible reservation; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(std::io::Error::last_os_error)?;
        let mut mapping = Mapping {
            base,
            total,
            capacity,
            size: 0,
        };
        // SAFETY: the range is the reservation just made.
        if unsafe { libc::madvise(ptr, total, libc::MADV_DONTFORK) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        mapping.grow(minimum)?;
        Ok(mapping)
    }

    fn grow(&mut self, new_size: usize) -> std::io::Result<()> {
        if new_size > self.capacity {
            return Err(std::io::Error::other(format!(
                "cannot grow a linear memory to {new_size} bytes beyond its {} byte reservation",
                self.capacity
            )));
        }
        let (from, to) = (round_up(self.size), round_up(new_size));
        if to > from {
            // SAFETY: [from, to) lies inside the reservation (to <= capacity <= total).
            let rc = unsafe {
                libc::mprotect(
                    self.base.as_ptr().add(from).cast(),
                    to - from,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        self.size = new_size;
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the whole reservation is ours and nothing refers to it once wasmtime drops it.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.total) };
    }
}

// SAFETY: the memory is page aligned, zero-filled when made accessible, never moves (growth stays in
// the reservation), and is followed by `guard` unmapped (inaccessible) bytes, as wasmtime requires.
unsafe impl LinearMemory for Mapping {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.capacity
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        self.grow(new_size).map_err(wasmtime::Error::from)
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }
}

// SAFETY: each memory made is a fresh, exclusively owned mapping honouring the requested reservation
// and guard sizes (see `Mapping`).
unsafe impl MemoryCreator for NoForkMemory {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        let capacity = reserved_size_in_bytes
            .or(maximum)
            .unwrap_or(minimum)
            .max(minimum);
        Mapping::new(capacity, guard_size_in_bytes, minimum)
            .map(|m| Box::new(m) as Box<dyn LinearMemory>)
            .map_err(|e| format!("cannot map a linear memory: {e}"))
    }
}
