//! Throughput of an XDP program through the kernel's whole XDP path: BPF_PROG_TEST_RUN with
//! BPF_F_TEST_XDP_LIVE_FRAMES (kernel >= 5.18) builds real xdp_frames from a page pool in
//! batches, runs the program on each and acts on the verdict (here XDP_DROP, which recycles
//! the page), all on the calling CPU with migration disabled.

use anyhow::{Context as _, bail};
use aya::{
    maps::PerCpuArray,
    programs::{ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp},
};
use quid::kernel::loader::Datapath;

/// Frames per batch, the kernel's own default (NAPI's budget).
const BATCH: u32 = 64;

/// Median ns per frame (the kernel's own timer, which leaves out time spent rescheduled:
/// other work on the machine does not count against the program). None when the kernel
/// refuses live frames (older than 5.18, or a sandbox that forbids them).
pub fn ns_per_frame(
    dp: &mut Datapath,
    name: &str,
    frame: &[u8],
    frames: u32,
    trials: usize,
) -> anyhow::Result<Option<f64>> {
    let before = cursor_sum(dp)?;
    let prog: &mut Xdp = dp.program(name)?;
    let mut samples = Vec::with_capacity(trials);
    for _ in 0..trials {
        let started = std::time::Instant::now();
        let r = match prog.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: frames,
            attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
            ..Default::default()
        }) {
            Ok(r) => r,
            Err(e) if refused(&e) => {
                log::warn!("{name}: the kernel refuses live frames: {e:#}");
                return Ok(None);
            }
            Err(e) => return Err(e).with_context(|| format!("{name}: live-frames test run")),
        };
        let wall = started.elapsed().as_secs_f64();
        log::debug!(
            "{name}: {} ns/frame by the kernel's timer, {:.2} Mpps by the wall clock",
            r.duration.as_nanos(),
            f64::from(frames) / wall / 1e6
        );
        samples.push(r.duration.as_nanos() as f64);
    }
    // Every frame must have run the program: each run steps this CPU's Zipf cursor once.
    let ran = cursor_sum(dp)?.wrapping_sub(before);
    let expected = u64::from(frames) * trials as u64;
    if ran != expected {
        bail!("{name}: the program ran on {ran} live frames, expected {expected}");
    }
    super::trials::median(samples).map(Some)
}

/// Whether the kernel turned the mode down as such rather than failing this run: EINVAL from
/// kernels before 5.18 (unknown flag), EPERM where live frames are forbidden (as on the
/// Firecracker guests of the benchmark machines, even for a two-instruction program).
fn refused(e: &ProgramError) -> bool {
    matches!(
        e,
        ProgramError::SyscallError(s)
            if matches!(s.io_error.raw_os_error(), Some(libc::EPERM | libc::EINVAL | libc::EOPNOTSUPP))
    )
}

/// How many frames the `_zipf` programs have run, summed over CPUs.
fn cursor_sum(dp: &Datapath) -> anyhow::Result<u64> {
    let map = dp
        .ebpf
        .map("BENCH_ZIPF_CURSOR")
        .context("BENCH_ZIPF_CURSOR")?;
    let cursor: PerCpuArray<_, u32> = PerCpuArray::try_from(map)?;
    Ok(cursor.get(&0, 0)?.iter().map(|&c| u64::from(c)).sum())
}
