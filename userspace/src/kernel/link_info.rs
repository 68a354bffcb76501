//! What the kernel says about a pinned XDP link: the interface it is attached to. A link whose
//! interface was deleted stays pinned but is defunct (ifindex 0), and a new interface of the
//! same name is a different device: both mean "attach afresh". aya 0.14 does not expose the
//! XDP part of the link info, so this asks the kernel directly.

use std::{
    ffi::CString,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_TYPE_XDP: u32 = 6;

/// `union bpf_attr` for BPF_OBJ_GET.
#[repr(C)]
struct ObjGet {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
struct GetInfo {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of `struct bpf_link_info` up to `xdp.ifindex` (the union starts 8-aligned at 16).
#[repr(C)]
#[derive(Default)]
struct LinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    xdp_ifindex: u32,
    _pad2: u32,
}

/// The bpf(2) system call with `attr`; its non-negative result.
///
/// # Safety
/// `attr` must be the attr layout the kernel expects for `cmd`, with valid pointers in it.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: as the caller promises.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The ifindex the XDP link pinned at `pin` is attached to; 0 once its interface is gone.
pub fn ifindex(pin: &Path) -> std::io::Result<u32> {
    let path = CString::new(pin.as_os_str().as_bytes())?;
    let mut get = ObjGet {
        pathname: path.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    // SAFETY: a valid BPF_OBJ_GET attr whose path outlives the call.
    let fd = unsafe { bpf(BPF_OBJ_GET, &mut get) }?;
    let fd = i32::try_from(fd).map_err(|_| {
        std::io::Error::other(format!("BPF_OBJ_GET returned {fd}, not a file descriptor"))
    })?;
    // SAFETY: the kernel just returned this descriptor to us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut info = LinkInfo::default();
    let info_len = u32::try_from(std::mem::size_of::<LinkInfo>())
        .map_err(|_| std::io::Error::other("bpf_link_info head larger than u32"))?;
    let mut attr = GetInfo {
        // The kernel's attr holds the (non-negative) descriptor as a __u32: same bits.
        bpf_fd: fd.as_raw_fd().cast_unsigned(),
        info_len,
        info: &mut info as *mut LinkInfo as u64,
    };
    // SAFETY: a valid attr pointing at a LinkInfo as long as info_len says.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    if info.link_type != BPF_LINK_TYPE_XDP {
        return Err(std::io::Error::other(format!(
            "{} is not an XDP link (type {})",
            pin.display(),
            info.link_type
        )));
    }
    Ok(info.xdp_ifindex)
}
