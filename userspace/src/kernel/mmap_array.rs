//! Memory-mapped BPF arrays (`BPF_F_MMAPABLE`): user space reads counters and writes pool
//! entries directly, with no syscall per element.

use std::{marker::PhantomData, num::NonZeroUsize, os::fd::AsFd, ptr::NonNull};

use aya::maps::{Map, MapData};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

use crate::kernel::error::KernelError;

/// A shared mapping of the first `entries` elements of a BPF array map.
pub struct MappedArray<T> {
    base: NonNull<T>,
    bytes: usize,
    entries: usize,
    _t: PhantomData<T>,
}

// SAFETY: the mapping lives until drop; concurrent kernel access is to plain integers, read and
// written with volatile accesses.
unsafe impl<T> Send for MappedArray<T> {}
// SAFETY: through `&MappedArray` elements are only read, by value with volatile reads (writes
// take `&mut self`), so sharing it between threads races no more than the kernel already does.
unsafe impl<T> Sync for MappedArray<T> {}

impl<T: Copy> MappedArray<T> {
    /// Maps `entries` elements of the array `map` (`name` only labels errors).
    ///
    /// The kernel stores array elements 8-byte aligned, so `T` must be a multiple of 8 bytes
    /// for element `i` to sit at `i * size_of::<T>()`.
    pub fn new(
        map: &Map,
        name: &'static str,
        entries: usize,
        writable: bool,
    ) -> Result<Self, KernelError> {
        const {
            assert!(
                std::mem::size_of::<T>().is_multiple_of(8),
                "BPF array elements are 8-byte aligned"
            )
        };
        let data: &MapData = match map {
            Map::Array(d) => d,
            _ => return Err(KernelError::MissingMap(name)),
        };
        let bytes = (entries * std::mem::size_of::<T>()).div_ceil(4096).max(1) * 4096;
        let prot = if writable {
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
        } else {
            ProtFlags::PROT_READ
        };
        let len = NonZeroUsize::new(bytes).ok_or(KernelError::MissingMap(name))?;
        // SAFETY: a fresh shared mapping of a BPF map fd; the kernel checks size and flags.
        let addr = unsafe { mmap(None, len, prot, MapFlags::MAP_SHARED, data.fd().as_fd(), 0) }
            .map_err(|e| KernelError::Mmap {
                name,
                source: e.into(),
            })?;
        Ok(MappedArray {
            base: addr.cast(),
            bytes,
            entries,
            _t: PhantomData,
        })
    }

    /// Number of mapped elements.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Element `i` (the kernel may be writing it concurrently).
    pub fn get(&self, i: usize) -> Option<T> {
        // SAFETY: bounds-checked; volatile because the kernel writes concurrently.
        (i < self.entries).then(|| unsafe { std::ptr::read_volatile(self.base.as_ptr().add(i)) })
    }

    /// Writes element `i`; only for mappings created writable.
    pub fn set(&mut self, i: usize, value: T) -> bool {
        if i >= self.entries {
            return false;
        }
        // SAFETY: bounds-checked, and `&mut self` means no other user-space writer.
        unsafe { std::ptr::write_volatile(self.base.as_ptr().add(i), value) };
        true
    }
}

impl<T> Drop for MappedArray<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        let _ = unsafe { munmap(self.base.cast(), self.bytes) };
    }
}
